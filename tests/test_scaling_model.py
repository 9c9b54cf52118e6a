"""The scaling model: alpha-beta costs, stragglers, the paper's headline, calibration, launcher."""

from __future__ import annotations

import ast
import csv
import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest

from climjax.parallel import scaling_model as sm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "launch", "scaling_model.py")


def test_alpha_beta_costs_on_hand_computed_cases():
  # 1 MB over 4 nodes, 1 us latency, 1 GB/s.
  assert sm.allreduce_time(1e6, 4, 1e-6, 1e9, "ring") == pytest.approx(2 * 3 / 4 * 1e-3 + 6 * 1e-6)
  assert sm.allreduce_time(1e6, 4, 1e-6, 1e9, "tree") == pytest.approx(2 * 2 * (1e-6 + 1e-3))
  assert sm.broadcast_time(1e6, 4, 1e-6, 1e9, "ring") == pytest.approx(1.5e-3 + (2 + 3) * 1e-6)
  assert sm.broadcast_time(1e6, 4, 1e-6, 1e9, "tree") == pytest.approx(2 * (1e-6 + 1e-3))
  for algorithm in sm.ALGORITHMS:
    assert sm.allreduce_time(1e9, 1, 1.0, 1.0, algorithm) == 0.0
  with pytest.raises(sm.ModelInputError, match="algorithm"):
    sm.allreduce_time(1e6, 4, 1e-6, 1e9, "butterfly")


def test_tree_wins_small_messages_ring_wins_large():
  p, alpha, bw = 1024, 2e-6, 8e9
  assert sm.allreduce_time(8, p, alpha, bw, "tree") < sm.allreduce_time(8, p, alpha, bw, "ring")
  assert sm.allreduce_time(300e6, p, alpha, bw, "ring") < sm.allreduce_time(
    300e6, p, alpha, bw, "tree"
  )


def test_expected_max_of_normals():
  assert sm.expected_max_normal(1) == 0.0
  assert sm.expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), rel=0.05)
  assert sm.expected_max_normal(1000) == pytest.approx(3.2414, rel=0.01)  # tabulated value


def _machine(**kw) -> sm.Machine:
  base = dict(
    name="m",
    achieved_flops=1e12,
    latency_s=2e-6,
    bandwidth=8e9,
    server_bandwidth=8e9,
    server_update_rate=2e10,
    straggler_cv=0.05,
  )
  return sm.Machine(**{**base, **kw})


WORKLOAD = sm.Workload("w", flops_per_example=1e12, parameter_bytes=3e8, per_node_batch=4)


def test_iteration_breakdown_adds_up():
  t = sm.iteration_time(WORKLOAD, _machine(), 64, strategy="hybrid", groups=4, servers=2)
  assert t["compute_s"] == pytest.approx(4.0)
  assert t["straggler_s"] == pytest.approx(0.05 * 4.0 * sm.expected_max_normal(16))
  assert t["comm_s"] == pytest.approx(t["allreduce_s"] + t["exchange_s"] + t["broadcast_s"])
  parts = t["compute_s"] + t["straggler_s"] + t["exposed_comm_s"] + t["wait_s"]
  assert t["total_s"] == pytest.approx(parts)
  single = sm.iteration_time(WORKLOAD, _machine(), 1)
  assert single["total_s"] == pytest.approx(single["compute_s"])
  with pytest.raises(sm.ModelInputError, match="servers"):
    sm.iteration_time(WORKLOAD, _machine(), 64, strategy="hybrid", groups=4)


@pytest.mark.parametrize(
  "layout", [dict(strategy="sync"), dict(strategy="hybrid", groups=4, servers=4)]
)
def test_speedup_grows_and_stays_below_linear(layout):
  nodes = [4, 8, 64, 512, 4096]
  s = [sm.speedup(WORKLOAD, _machine(), n, **layout) for n in nodes]
  assert all(a < b for a, b in zip(s, s[1:], strict=False)), s
  assert all(x <= n for x, n in zip(s, nodes, strict=True)), s


def test_gradient_lag_is_never_slower():
  for bandwidth in (1e8, 8e9):
    for batch in (0.01, 1, 16):
      for layout in (dict(strategy="sync"), dict(strategy="hybrid", groups=8, servers=4)):
        args = (WORKLOAD, _machine(bandwidth=bandwidth), 256)
        plain = sm.iteration_time(*args, per_node_batch=batch, **layout)["total_s"]
        lag = sm.iteration_time(*args, per_node_batch=batch, gradient_lag=True, **layout)["total_s"]
        assert lag <= plain + 1e-12


def test_paper_headline_within_stated_tolerance():
  out = sm.reproduce_paper()
  rows = {r["quantity"]: r for r in out["rows"]}
  for key in ("iteration_s", "sustained_flops", "speedup"):
    assert abs(rows[key]["rel_error"]) <= sm.PAPER_TOLERANCE, rows[key]
  assert rows["peak_flops"]["model"] is None  # not modelled, and said so
  # Every assumed number carries a source.
  for obj in (sm.CORI_KNL, sm.CLIMATE_SC17):
    for field in dataclasses.fields(obj):
      if field.name not in ("name", "sources"):
        assert obj.sources.get(field.name), field.name
  assert set(sm.PAPER_LAYOUT) == set(sm.PAPER_LAYOUT_SOURCES)


def test_architecture_count_matches_the_detector():
  # configs/semisup.py states the paper network's cost at 768x1152x16.
  cost = sm.encoder_decoder_cost(768, 1152, 16)
  assert cost["flops_forward"] == pytest.approx(640e9, rel=1e-3)
  assert cost["flops_train"] == pytest.approx(1.89e12, rel=5e-3)
  assert cost["parameters"] == pytest.approx(132.9e6, rel=1e-3)
  # The same filters as climjax.models.detector (read from its source: no JAX here).
  tree = ast.parse(open(os.path.join(REPO, "climjax", "models", "detector.py")).read())
  (features,) = [
    ast.literal_eval(n.value)
    for n in tree.body
    if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "PAPER_FEATURES"
  ]
  assert tuple(features) == sm.DETECTOR_FEATURES


def _stat_eff_csv(path, rows):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(sm.STAT_EFF_COLUMNS)
    w.writerows(rows)
  return str(path)


def test_read_stat_eff(tmp_path):
  rows = [
    (1, 0, 100, 0),
    (1, 1, 120, 0),
    (2, 0, 121, 0),
    (2, 1, 99, 0),
    (8, 0, 330, 1),
    (8, 1, "", 1),
  ]
  out = sm.read_stat_eff(_stat_eff_csv(tmp_path / "s.csv", rows))
  assert out["multiplier"] == {1: 1.0, 2: 1.0, 8: 3.0}
  assert out["simulated"] == {1: False, 2: False, 8: True}
  with pytest.raises(sm.ModelInputError, match="groups=1"):
    sm.read_stat_eff(_stat_eff_csv(tmp_path / "t.csv", [(2, 0, 10, 0)]))


def test_best_layout_weighs_asynchrony_against_communication():
  # Fast network, costly asynchrony: synchronous.
  costly = sm.best_layout(WORKLOAD, _machine(), 1024, sm.linear_stat_eff(2.0))
  assert costly["best"]["groups"] == 1 and costly["best"]["strategy"] == "sync"
  # Slow, high-latency network and little compute: communication dominates, groups win.
  light = sm.Workload("light", flops_per_example=1e9, parameter_bytes=1e8, per_node_batch=1)
  slow = _machine(latency_s=1e-3, bandwidth=1e9, server_bandwidth=1e9)
  chatty = sm.best_layout(light, slow, 1024, sm.linear_stat_eff(0.05))
  assert chatty["best"]["groups"] > 1 and chatty["best"]["strategy"] == "hybrid"
  # A measured table: only its G are tried.
  table = sm.best_layout(light, slow, 1024, {1: 1.0, 2: 1.1, 4: 1.3})
  assert {c["groups"] for c in table["candidates"]} == {1, 2, 4}


# Files in the formats launch/bench.py and launch/bench_comm.py write (their main()s).
ALPHA, BANDWIDTH, RANKS = 20e-6, 5e9, 2


def _bench_files(tmp_path) -> tuple[str, str]:
  bench = {
    "machine": {"cpu": "Test CPU", "cores": 2, "clock_ghz": 2.45, "fp32_lanes": 8, "fma": True},
    "threads": 2,
    "ld_preload": "",
    "xla_flags": "",
    "allocator": "tcmalloc",
    "jax": "0.10.2",
    "nominal_peak_gflops": 157.0,
    "native_kernels": True,
    "fma_loop_gflops": 190.0,
    "fma_loop_one_core_gflops": 94.0,
    "peak_gflops": 190.0,
    "torch": "2.13.0",
    "tc": {
      "flops_per_step": 256 * 15e6,
      "climjax_seconds_per_step": 0.064,
      "climjax_examples_per_second": 4000.0,
      "climjax_gflops": 60.0,
      "fraction_of_peak": 0.32,
      "xla_examples_per_second": 1200.0,
      "torch_examples_per_second": 6000.0,
      "ratio": 0.67,
    },
    "detector768": {
      "flops_per_step": 1.265e12,
      "climjax_seconds_per_step": 12.65,
      "climjax_examples_per_second": 1 / 12.65,
      "climjax_gflops": 100.0,
      "fraction_of_peak": 0.53,
    },
  }
  sizes = [1024 * 16**k for k in range(5)] + [300 * 2**20]
  ring = [2 * (RANKS - 1) * ALPHA + 2 * (RANKS - 1) / RANKS * n / BANDWIDTH for n in sizes]
  comm = {
    "ranks": RANKS,
    "cores": 2,
    "allreduce": [
      {
        "bytes": n,
        "mpi4py_s": t * 0.9,
        "mpi4jax_s": t,
        "mpi4py_GBps": n / t / 0.9e9,
        "mpi4jax_GBps": n / t / 1e9,
      }
      for n, t in zip(sizes, ring, strict=True)
    ],
    "tc_cnn": {
      "model": "tc_cnn",
      "per_rank_batch": 128,
      "step_local_s": 0.07,
      "step_sync_s": 0.075,
      "communication_share": 0.067,
      "allreduce_alone_s": 0.002,
      "allreduce_alone_share": 0.027,
      "gradient_bytes": 1_200_000,
    },
    "detector": None,
  }
  paths = str(tmp_path / "bench.json"), str(tmp_path / "bench_comm.json")
  for path, data in zip(paths, (bench, comm), strict=True):
    with open(path, "w") as f:
      json.dump(data, f, indent=2)
  return paths


def test_calibration_reads_the_benchmarks(tmp_path):
  bench, comm = _bench_files(tmp_path)
  cal = sm.calibrate(bench, comm)
  assert cal["achieved_flops"] == {"tc": 60e9, "detector768": 100e9}
  assert cal["batch"] == {"tc": 256, "detector768": 1}
  assert cal["flops_per_example"]["tc"] == pytest.approx(15e6)
  assert cal["latency_s"] == pytest.approx(ALPHA, rel=1e-3)
  assert cal["bandwidth"] == pytest.approx(BANDWIDTH, rel=1e-3)
  assert cal["mpi4py_bandwidth"] == pytest.approx(BANDWIDTH / 0.9, rel=1e-3)
  assert cal["gradient_bytes"] == {"tc_cnn": 1_200_000}
  machine = sm.local_machine(cal, cal["achieved_flops"]["tc"] / 2)
  assert (machine.achieved_flops, machine.latency_s) == (30e9, cal["latency_s"])
  assert sm.calibrate() == {
    "achieved_flops": {},
    "flops_per_example": {},
    "batch": {},
    "sources": {},
  }


def _run(*args):
  return subprocess.run(
    [sys.executable, LAUNCHER, *args], capture_output=True, text=True, timeout=60, cwd=REPO
  )


def test_launcher_prints_the_paper_table_and_compares(tmp_path):
  bench, comm = _bench_files(tmp_path)
  stat_eff = _stat_eff_csv(tmp_path / "se.csv", [(1, 0, 100, 0), (2, 0, 104, 0), (4, 0, 130, 1)])
  scaling = tmp_path / "scaling.csv"
  with open(scaling, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=[*sm.SCALING_COLUMNS, "workers"])
    w.writeheader()
    for ranks, strategy, groups, servers, eps in (
      (1, "sync", 1, 0, 4000),
      (2, "sync", 1, 0, 3600),
      (3, "hybrid", 2, 1, 3000),
    ):
      w.writerow(
        {
          "ranks": ranks,
          "strategy": strategy,
          "groups": groups,
          "servers": servers,
          "mode": "strong",
          "model": "tc",
          "global_batch": 256,
          "examples_per_second": eps,
          "efficiency": 1.0,
          "compute_s": 0.06,
          "comm_s": "",
          "wait_s": "",
          "staleness_mean": 0,
          "steps_to_target": "",
          "workers": ranks - servers,
        }
      )
  out = tmp_path / "model.json"
  run = _run(
    f"--bench={bench}",
    f"--bench_comm={comm}",
    f"--stat_eff={stat_eff}",
    f"--csv={scaling}",
    "--nodes=1,64,9600",
    f"--out={out}",
  )
  assert run.returncode == 0, run.stderr
  text = run.stdout
  for line in (
    "| iteration time (s) | 12.60 |",
    "| sustained PF/s | 13.27 |",
    "| speed-up over one node | 7,200x |",
    "straggler_cv",
    "Weak scaling",
    "Best layout",
    "This machine",
    "scaling.csv beside the model",
  ):
    assert line in text, line
  report = json.load(open(out))
  assert {r["quantity"] for r in report["paper"]["rows"]} == set(sm.PAPER_RESULTS)
  assert len(report["csv"]) == 3 and report["csv"][0]["rel_error"] == pytest.approx(0, abs=1e-9)


def test_launcher_errors_are_one_line(tmp_path):
  bad = tmp_path / "scaling.csv"
  bad.write_text("ranks,strategy\n1,sync\n")
  run = _run(f"--csv={bad}")
  assert run.returncode == 2
  assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
  assert str(bad) in run.stderr and "expected columns" in run.stderr
  run = _run(f"--bench={tmp_path / 'absent.json'}")
  assert run.returncode == 2 and "absent.json" in run.stderr and "Traceback" not in run.stderr
