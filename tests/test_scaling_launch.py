"""launch/scaling.py: the sweep's points, Slurm scripts, the CSV's arithmetic, resume, one real run."""

import csv
import json
import math
import os
import re
import subprocess

import ml_collections
import pytest
from conftest import needs_mpi

from configs import scaling as sweeps
from launch import scaling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("arg", [None, "tiny", "cluster"])
def test_sweep_points_are_valid(arg):
  sweep = sweeps.get_sweep(arg)
  points = scaling.points_of(sweep)  # raises on any point that cannot run
  assert len(points) == len(sweep.points)
  assert {p["model"] for _, p, _ in points} == {"tc", "detector"}
  for name, point, plan in points:
    assert point["strategy"] in ("sync", "hybrid") and point["mode"] in ("strong", "weak")
    assert plan["workers"] % point["groups"] == 0
    assert plan["per_rank_batch"] * plan["workers"] == plan["global_batch"]
    if point["strategy"] == "sync":
      assert (point["groups"], point["servers"]) == (1, 0), name
    else:
      assert (
        point["servers"] >= 1
        and plan["steps"] == sweep.models[point["model"]].steps * point["groups"]
      )
  for model in sweep.models.values():
    config = scaling.model_config(model.config)  # the file and its argument exist
    flat = scaling._flatten(model.overrides)
    for dotted in flat:  # every override names a field of the config
      section, field = dotted.split(".")
      assert field in config[section], dotted
    assert model.metric.startswith("test_") and model.target > 0
  if arg is None:  # the local sweep: >= 6 points, each strong and weak series has its 1-rank base
    assert len(points) >= 6 and max(p["ranks"] for _, p, _ in points) >= 4
    for model, mode in {(p["model"], p["mode"]) for _, p, _ in points}:
      assert any(
        (p["model"], p["mode"], p["ranks"], p["strategy"]) == (model, mode, 1, "sync")
        for _, p, _ in points
      )


def test_unknown_sweep_argument():
  with pytest.raises(ValueError, match="expected one of"):
    sweeps.get_sweep("huge")


@pytest.mark.parametrize(
  "point, match",
  [
    (dict(ranks=4, strategy="hybrid", groups=2, servers=1, mode="strong"), "equal groups"),
    (dict(ranks=2, strategy="sync", groups=1, servers=1, mode="strong"), "no servers"),
    (dict(ranks=3, strategy="sync", groups=1, servers=0, mode="strong"), "does not split"),
    (dict(ranks=1, strategy="hybrid", groups=1, servers=1, mode="weak"), ">= 1 worker"),
    (dict(ranks=2, strategy="async", groups=1, servers=0, mode="weak"), "strategy must be"),
  ],
)
def test_invalid_points_are_refused(point, match):
  model = {"steps": 10, "strong_batch": 64, "weak_batch": 8}
  with pytest.raises(ValueError, match=match):
    scaling.plan({"model": "tc", **point}, model)


def test_hybrid_point_overrides():
  model = ml_collections.ConfigDict(
    {"steps": 50, "strong_batch": 64, "weak_batch": 8, "overrides": {"train": {"eval_every": 10}}}
  )
  point = dict(model="tc", ranks=5, strategy="hybrid", groups=2, servers=1, mode="weak")
  plan = scaling.plan(point, model)
  assert plan == {
    "workers": 4, "batch_size": 8, "per_rank_batch": 8, "global_batch": 32, "update_batch": 16,
    "steps": 100, "eval_every": 20,
  }  # fmt: skip
  flags = scaling.overrides(point, model, plan, data_dir="/d")
  for flag in (
    "--config.parallel.strategy=hybrid", "--config.parallel.num_groups=2",
    "--config.parallel.num_servers=1", "--config.parallel.scaling=weak",
    "--config.train.batch_size=8", "--config.train.steps=100", "--config.train.eval_every=20",
    "--config.data.data_dir=/d",
  ):  # fmt: skip
    assert flag in flags
  assert scaling.point_name(point) == "hybrid_weak_r5_g2_s1"


def _sbatch_options(text: str) -> dict:
  options = {}
  for line in text.splitlines():
    if line.startswith("#SBATCH "):
      key, _, value = line[len("#SBATCH ") :].partition("=")
      options[key] = value
  return options


@pytest.mark.parametrize("ranks_per_node", [1, 4])
def test_emit_slurm_writes_parseable_scripts(tmp_path, capsys, ranks_per_node):
  workdir = tmp_path / "w"
  argv = [
    "--config=configs/scaling.py:cluster", f"--workdir={workdir}", "--emit=slurm",
    "--cores_per_node=68", f"--ranks_per_node={ranks_per_node}", "--slurm_option=--constraint=knl",
  ]  # fmt: skip
  assert scaling.main(argv) == 0
  out = capsys.readouterr().out
  sweep = sweeps.get_sweep("cluster")
  slurm = workdir / "slurm"
  submit = (slurm / "submit_all.sh").read_text()
  for name, point, plan in scaling.points_of(sweep):
    path = slurm / f"{point['model']}_{name}.sbatch"
    assert str(path) in out
    text = path.read_text()
    assert text.startswith("#!/bin/bash\n")
    subprocess.run(["bash", "-n", str(path)], check=True)  # valid shell
    options = _sbatch_options(text)
    ranks = point["ranks"]
    assert int(options["--ntasks"]) == ranks
    per_node = int(options["--ntasks-per-node"])
    assert per_node == min(ranks, ranks_per_node)
    assert int(options["--nodes"]) == math.ceil(ranks / per_node)
    assert int(options["--cpus-per-task"]) == 68 // ranks_per_node
    assert re.fullmatch(r"\d\d:\d\d:\d\d", options["--time"])
    assert options["--job-name"] == f"scaling_{point['model']}_{name}"
    point_dir = workdir / point["model"] / name
    assert options["--output"] == f"{point_dir}/slurm-%j.out" and point_dir.is_dir()
    assert "--constraint" in options
    command = text[text.index("srun ") :].replace("\\\n", " ").split()
    assert "--cpu-bind=cores" in command and f"--ntasks={ranks}" in command
    assert "launch/main.py" in command and "mpi4py" in command
    config = sweep.models[point["model"]].config
    assert f"--config={config}" in command and f"--workdir={point_dir}" in command
    assert f"--config.train.steps={plan['steps']}" in command
    assert f"--config.platform.threads={68 // ranks_per_node}" in command
    assert f"OMP_NUM_THREADS={68 // ranks_per_node}" in text
    assert f"--dependency=afterok:$prepare {path.name}" in submit
  assert "--emit=data" in (slurm / "prepare_data.sbatch").read_text()
  subprocess.run(["bash", "-n", str(slurm / "submit_all.sh")], check=True)
  assert os.access(slurm / "submit_all.sh", os.X_OK)


# ---- the CSV on hand-written workdirs ------------------------------------------------


def _fake_sweep():
  model = {"config": "configs/tc.py:tiny", "steps": 40, "strong_batch": 64, "weak_batch": 16,
           "metric": "test_accuracy", "target": 0.9, "overrides": {"train": {"eval_every": 10}}}  # fmt: skip
  points = [
    dict(model="tc", ranks=r, strategy="sync", groups=1, servers=0, mode=m)
    for m in ("strong", "weak")
    for r in (1, 2, 4)
  ] + [dict(model="tc", ranks=3, strategy="hybrid", groups=2, servers=1, mode="strong")]
  return ml_collections.ConfigDict({"models": {"tc": model}, "points": points})


def _write_point(workdir, name, summary, accuracies=()):
  point_dir = os.path.join(workdir, "tc", name)
  os.makedirs(point_dir, exist_ok=True)
  with open(os.path.join(point_dir, "summary.json"), "w") as f:
    json.dump(summary, f)
  with open(os.path.join(point_dir, "metrics.jsonl"), "w") as f:
    for step, accuracy in accuracies:
      f.write(json.dumps({"step": step, "loss": 0.5}) + "\n")
      f.write(json.dumps({"step": step, "test_accuracy": accuracy}) + "\n")


def test_csv_efficiency_and_steps_to_target(tmp_path):
  workdir = str(tmp_path)
  eps = {"strong": {1: 1000.0, 2: 1600.0, 4: 2000.0}, "weak": {1: 500.0, 2: 900.0, 4: 1000.0}}
  for mode, by_ranks in eps.items():
    for ranks, rate in by_ranks.items():
      summary = {"examples_per_second": rate, "steps": 40, "test_accuracy": 0.8}
      if ranks == 2:  # the time split, as summary.json carries it once recorded
        summary.update(compute_seconds=0.01, communication_seconds=0.002, wait_seconds=0.001,
                       input_seconds=0.0005, step_seconds=0.0136, communication_fraction=0.15)  # fmt: skip
      _write_point(workdir, f"sync_{mode}_r{ranks}", summary, [(10, 0.7), (20, 0.91), (30, 0.95)])
  # Never reached during training, but the final evaluation (summary.json) does.
  _write_point(
    workdir, "hybrid_strong_r3_g2_s1",
    {"examples_per_second": 1200.0, "steps": 80, "test_accuracy": 0.93, "staleness_mean": 0.75},
    [(20, 0.5), (40, 0.6)],
  )  # fmt: skip
  rows = scaling.collect(_fake_sweep(), workdir, cores=2)
  path = scaling.write_csv(rows, os.path.join(workdir, "scaling.csv"))
  with open(path) as f:
    table = list(csv.DictReader(f))
  assert len(table) == 7
  assert set(scaling.COLUMNS[:14]) <= set(table[0])
  by_name = {r["name"] + "/" + r["mode"]: r for r in table}
  r = by_name["sync_strong_r4/strong"]
  assert float(r["efficiency"]) == pytest.approx(2000 / 1000 / 4)
  assert float(r["speedup"]) == pytest.approx(2.0)
  assert r["oversubscribed"] == "True" and r["cores"] == "2" and r["global_batch"] == "64"
  assert r["steps_to_target"] == "20" and r["staleness_mean"] == "0"
  assert r["compute_s"] == "" and r["comm_s"] == ""  # not recorded: empty, not 0
  r = by_name["sync_weak_r2/weak"]
  assert float(r["efficiency"]) == pytest.approx(900 / (2 * 500))
  assert r["global_batch"] == "32" and r["per_rank_batch"] == "16"
  assert (
    float(r["compute_s"]) == 0.01 and float(r["comm_s"]) == 0.002 and float(r["wait_s"]) == 0.001
  )
  assert r["oversubscribed"] == "False"
  r = by_name["hybrid_strong_r3_g2_s1/strong"]
  assert r["steps_to_target"] == "80" and r["examples_to_target"] == str(80 * 32)
  assert float(r["efficiency"]) == pytest.approx(1200 / (3 * 1000))
  assert float(r["staleness_mean"]) == 0.75 and r["update_batch"] == "32"
  assert by_name["sync_strong_r1/strong"]["efficiency"] == "1"


def test_steps_to_target_never_reached():
  records = [{"step": 10, "test_accuracy": 0.5}, {"step": 20, "loss": 0.1}]
  assert (
    scaling.steps_to_target(records, {"test_accuracy": 0.6, "steps": 20}, "test_accuracy", 0.9)
    is None
  )
  # The detector's summary names the metric without "test_".
  assert scaling.steps_to_target([], {"map@0.5": 0.4, "steps": 6}, "test_map@0.5", 0.3) == 6


def test_report_writes_csv_and_plots(tmp_path):
  workdir = str(tmp_path)
  for mode in ("strong", "weak"):
    for ranks in (1, 2, 4):
      _write_point(workdir, f"sync_{mode}_r{ranks}", {"examples_per_second": 100.0 * ranks**0.5})
  written = scaling.report(_fake_sweep(), workdir)
  assert written[0].endswith("scaling.csv")
  plots = [p for p in written if p.endswith(".png")]
  assert len(plots) >= 3 and all(os.path.getsize(p) > 1000 for p in plots)


def test_resume_skips_done_points_and_reports_failures(tmp_path, monkeypatch, capsys):
  workdir = str(tmp_path)
  _write_point(workdir, "sync_strong_r1", {"examples_per_second": 1000.0, "steps": 40})
  stale = tmp_path / "tc" / "sync_strong_r2"
  stale.mkdir(parents=True)
  (stale / "leftover").write_text("from an interrupted run")
  ran = []

  def fake_run(command, point_dir, *, timeout_s):
    del timeout_s
    ran.append(os.path.basename(point_dir))
    assert not os.path.exists(os.path.join(point_dir, "leftover"))  # started over
    os.makedirs(point_dir, exist_ok=True)
    with open(os.path.join(point_dir, "run.log"), "w") as f:
      f.write("Traceback: something broke\n")
    if "sync_weak_r1" in point_dir:
      return 1
    assert any(c.startswith("--config.train.batch_size=") for c in command)
    with open(os.path.join(point_dir, "summary.json"), "w") as f:
      json.dump({"examples_per_second": 1500.0, "steps": 40}, f)
    return 0

  monkeypatch.setattr(scaling, "run_point", fake_run)
  monkeypatch.setattr(scaling, "prepare_data", lambda *a, **k: True)
  assert scaling.run_sweep(_fake_sweep(), workdir) == 1  # one failed, the rest ran
  out = capsys.readouterr().out
  assert "sync_strong_r1" not in ran and ran[0] == "sync_strong_r2" and len(ran) == 6
  assert "done earlier, kept" in out and "starting over" in out
  assert "FAILED" in out and "something broke" in out
  ran.clear()
  assert scaling.run_sweep(_fake_sweep(), workdir) == 1
  assert ran == ["sync_weak_r1"]  # only the failed point again


# ---- one real sweep ------------------------------------------------------------------


@needs_mpi
@pytest.mark.slow  # 22 s on the quiet 2-core machine, 50 s while other runs share it
def test_tiny_sweep_end_to_end(tmp_path, capsys):
  """The tiny data and two MPI runs, then a rerun that runs nothing."""
  workdir = tmp_path / "scaling"
  argv = ["--config=configs/scaling.py:tiny", f"--workdir={workdir}", "--only=tc"]
  assert scaling.main(argv) == 0
  with open(workdir / "scaling.csv") as f:
    table = list(csv.DictReader(f))
  assert [(r["ranks"], r["strategy"]) for r in table] == [("1", "sync"), ("2", "sync")]
  for row in table:
    assert float(row["examples_per_second"]) > 0 and float(row["efficiency"]) > 0
    assert row["model"] == "tc" and row["steps"] == "20"
  assert len(list((workdir / "plots").glob("*.png"))) >= 3
  summary = json.loads((workdir / "tc" / "sync_strong_r2" / "summary.json").read_text())
  assert summary["num_ranks"] == 2 and summary["parallel_strategy"] == "sync"
  assert float(table[1]["compute_s"]) > 0 and table[1]["comm_s"] != ""  # the time split
  capsys.readouterr()
  assert scaling.main(argv) == 0  # resumes: nothing left to run
  assert capsys.readouterr().out.count("done earlier, kept") == 2
