"""The launcher: config overrides work, and bad input ends in one line naming the field."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run(
      [sys.executable, os.path.join(REPO, "launch", "main.py"), *args],
      cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip


@pytest.mark.parametrize(
  "override, field",
  [
    ("--config.train.batch_size=-4", "train.batch_size"),
    ("--config.model.name=resnet", "model.name"),
    ("--config.platform.threads=-1", "platform.threads"),
  ],
)
def test_bad_values_exit_with_one_line_naming_the_field(tmp_path, override, field):
  result = _run(
    f"--config={REPO}/configs/tc.py:tiny", override, f"--workdir={tmp_path}/run", cwd=tmp_path
  )
  assert result.returncode == 2, result.stderr
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("climjax: error:") and field in lines[0], (
    result.stderr
  )


@pytest.mark.parametrize(
  "override, fragments",
  [
    ("--config.train.bach_size=4", ("--config.train.bach_size", "'bach_size'", '"batch_size"')),
    ("--config.trian.steps=4", ("--config.trian.steps", '"train"')),
    ("--config.train.steps=abc", ("--config.train.steps=abc", "abc")),
    ("--config.train.batch_size=5000", ("train.batch_size=5000", "1024 training examples")),
    ("--resume=sometimes", ("--resume",)),
  ],
)
def test_bad_flags_exit_with_one_line(tmp_path, override, fragments):
  """A mistyped field, a value of the wrong type, a batch larger than the data: one line, exit 2."""
  result = _run(
    f"--config={REPO}/configs/tc.py:tiny", override, f"--workdir={tmp_path}/run", cwd=tmp_path
  )
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
  assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]


def test_default_workdir_keeps_strategies_and_layouts_apart(monkeypatch):
  """The README's sync command after the single-process demo does not resume the demo's run."""
  import importlib.util

  from configs import tc

  spec = importlib.util.spec_from_file_location(
    "climjax_main", os.path.join(REPO, "launch", "main.py")
  )
  main = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(main)
  config = tc.get_config(None)
  for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(var, raising=False)
  assert main.default_workdir(config) == os.path.join("runs", "tc")
  monkeypatch.setenv("PMI_SIZE", "2")
  config.parallel.strategy = "sync"
  assert main.default_workdir(config) == os.path.join("runs", "tc-sync2")
  config.parallel.update(strategy="hybrid", num_groups=2, num_servers=1)
  monkeypatch.setenv("PMI_SIZE", "3")
  assert main.default_workdir(config) == os.path.join("runs", "tc-hybrid3-g2s1")


def test_help_lists_the_configs_and_the_stable_fields(tmp_path):
  result = _run("--help", cwd=tmp_path)
  assert result.returncode == 0
  for text in ("configs/semisup.py", ":tiny", ":paper", "parallel.strategy", "--resume"):
    assert text in result.stdout, text


def test_unwritable_workdir_is_one_line(tmp_path):
  (tmp_path / "file").write_text("x")
  result = _run(
    f"--config={REPO}/configs/tc.py:tiny", f"--workdir={tmp_path}/file/run", cwd=tmp_path
  )
  assert result.returncode == 2
  assert (
    result.stderr.strip().splitlines() == [result.stderr.strip()] and "--workdir" in result.stderr
  )


def test_overrides_reach_the_run(tmp_path):
  result = _run(
    f"--config={REPO}/configs/tc.py:tiny",
    "--config.train.steps=12",
    "--config.train.log_every=4",
    f"--config.data.data_dir={tmp_path}/tfds",
    f"--workdir={tmp_path}/run",
    cwd=tmp_path,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.load(open(tmp_path / "run" / "summary.json"))
  assert summary["steps"] == 12
  assert "step 12/12" in result.stdout
  # The platform default reaches XLA before JAX starts (printed by the launcher).
  assert "--xla_cpu_experimental_ynn_fusion_type=individual_dot" in result.stdout


@pytest.mark.parametrize(
  "xla_flags,expected",
  [
    ("", True),  # jaxlib's default hands convolutions to YNNPACK
    ("--xla_cpu_experimental_ynn_fusion_type=individual_dot", False),
    ("--xla_cpu_experimental_ynn_fusion_type=", False),
    ("--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution", True),
    (
      "--xla_cpu_experimental_ynn_fusion_type= --xla_cpu_experimental_ynn_fusion_type=individual_convolution",
      True,
    ),
  ],
)
def test_ynn_convolutions_reads_the_last_flag(monkeypatch, xla_flags, expected):
  from climjax import platform

  monkeypatch.setenv("XLA_FLAGS", xla_flags)
  assert platform.ynn_convolutions() is expected
