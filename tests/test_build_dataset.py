"""launch/build_dataset.py end to end: builds, one-line errors, and failed builds that leave no trace."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from climjax.data import landsea, netcdf, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NLAT, NLON, STEPS = 96, 144, 8


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """CAM5 netCDF files: one with PSL as `pmsl` (needs a variables map), one with a bad step."""
  root = tmp_path_factory.mktemp("netcdf")
  ds, _ = synthetic.generate_fields(STEPS, seed=2, nlat=NLAT, nlon=NLON)
  # LANDFRAC as CAM5 writes it, so the AR heuristics need not build a land mask.
  land = landsea.land_fraction(ds["lat"].values, ds["lon"].values)
  ds["LANDFRAC"] = (("time", "lat", "lon"), np.broadcast_to(land, ds["PSL"].shape).copy())
  netcdf.write_cam5_netcdf(ds.rename({"PSL": "pmsl"}), root / "renamed.nc")
  broken = ds.copy(deep=True)
  broken["PRECT"].values[-1] = np.nan  # read only when the test split is written
  netcdf.write_cam5_netcdf(broken, root / "broken.nc")
  return root


def _run(*args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": REPO}
  return subprocess.run(
    [sys.executable, os.path.join(REPO, "launch", "build_dataset.py"), *args],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=300,
  )


def _files(root) -> dict[str, str]:
  """Every file under root -> its sha1."""
  out = {}
  for base, _, names in os.walk(root):
    for name in names:
      path = os.path.join(base, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha1(f.read()).hexdigest()
  return out


def _one_error_line(result: subprocess.CompletedProcess) -> str:
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 2, result.stderr
  assert len(lines) == 1 and lines[0].startswith("climjax: error: "), result.stderr
  return lines[0]


def test_failed_builds_say_which_file_and_variable_and_leave_the_data_dir_as_it_was(
  tmp_path, inputs
):
  data_dir = str(tmp_path / "tfds")
  built = _run(
    "--task=tc", "--source=synthetic", "--config_arg=tiny", "--num_train=64", "--num_test=32",
    f"--data_dir={data_dir}",
  )  # fmt: skip
  assert built.returncode == 0, built.stderr
  assert "[climjax] train: 64 patches" in built.stdout
  assert (
    "--config=configs/tc.py:tiny" in built.stdout and "--config.data.num_train=64" in built.stdout
  )
  before = _files(data_dir)
  assert any(path.endswith("stats.json") for path in before)

  # PSL under another name and no variables map: fails before anything is written.
  missing = _run(
    "--task=tc", "--source=netcdf", f"--input={inputs / 'renamed.nc'}", f"--data_dir={data_dir}"
  )
  line = _one_error_line(missing)
  assert f"{inputs / 'renamed.nc'}: variable PSL: not found" in line and "variables_map" in line
  # A bad time step in the test split: fails after the train split was written.
  broken = _run(
    "--task=detection",
    "--source=netcdf",
    f"--input={inputs / 'broken.nc'}",
    f"--data_dir={data_dir}",
  )
  line = _one_error_line(broken)
  assert f"{inputs / 'broken.nc'}: variable PRECT: time step {STEPS - 1} is all NaN" in line
  assert "[climjax] detection train: snapshot" in broken.stdout  # it got that far

  # The earlier dataset is byte for byte what it was, and the failures left no files.
  assert _files(data_dir) == before


def test_detection_from_netcdf_with_a_variables_map(tmp_path, inputs):
  args = (
    "--task=detection",
    "--source=netcdf",
    f"--input={inputs / 'renamed.nc'}",
    f"--data_dir={tmp_path}",
  )
  refused = _run(*args)
  assert "renamed.nc: variable PSL: not found" in _one_error_line(refused)
  assert "variables_map" in refused.stderr  # the fix is named

  built = _run(*args, "--variables_map=pmsl:PSL", "--test_fraction=0.25")
  assert built.returncode == 0, built.stderr
  assert (
    "[climjax] train: 6 snapshots" in built.stdout and "[climjax] test: 2 snapshots" in built.stdout
  )
  assert "--config.data.variables_map=pmsl:PSL" in built.stdout
  # configs/semisup.py defines every file field, and the grid is the files', so the
  # printed command runs as is.
  assert "note: the experiment config has no" not in built.stdout
  assert "--config.data.height=96 --config.data.width=144" in built.stdout
  # Named by what it holds, not by the caps of configs/semisup.py (640 / 128).
  assert "-train6-test2-" in built.stdout and "-train640-" not in built.stdout.split("named")[-1]
  assert "--config.data.num_train=6 --config.data.num_test=2" in built.stdout
  (config_dir,) = [d for d in os.listdir(tmp_path / "extreme_weather") if "-train6-test2-" in d]
  capped = config_dir.replace("-train6-test2-", "-train640-test160-")
  assert not os.path.exists(tmp_path / "extreme_weather" / capped)  # moved, not copied
  # Those counts find it again: nothing is labelled a second time.
  again = _run(*args, "--variables_map=pmsl:PSL", "--test_fraction=0.25", "--num_train=6",
               "--num_test=2")  # fmt: skip
  assert again.returncode == 0, again.stderr
  assert config_dir in again.stdout and "labelling" not in again.stdout
  assert "[climjax] train: 6 snapshots" in again.stdout


def test_height_and_width_are_refused_where_nothing_uses_them(tmp_path, inputs):
  netcdf_input = (f"--input={inputs / 'renamed.nc'}", f"--data_dir={tmp_path}")
  refused = _run("--task=detection", "--source=netcdf", *netcdf_input, "--height=768")
  line = _one_error_line(refused)
  assert (
    "--height apply to synthetic snapshots; netcdf input is read on its files' own grid" in line
  )
  refused = _run("--task=tc", "--source=synthetic", "--width=64", f"--data_dir={tmp_path}")
  assert "--width set the grid of synthetic detection snapshots" in _one_error_line(refused)
  assert not os.listdir(tmp_path)  # refused before anything was written


@pytest.fixture(scope="module")
def one_degree(tmp_path_factory):
  """A CAM5 netCDF file on a 1 deg grid, the spacing the WF patches are defined on."""
  path = tmp_path_factory.mktemp("one_degree") / "cam5.nc"
  ds, _ = synthetic.generate_fields(8, seed=3, nlat=180, nlon=360)
  netcdf.write_cam5_netcdf(ds, path)
  return path


def test_wf_patches_from_netcdf(tmp_path, one_degree):
  built = _run("--task=wf", "--source=netcdf", f"--input={one_degree}", f"--data_dir={tmp_path}")
  assert built.returncode == 0, built.stderr
  lines = dict(line.split(": ", 1) for line in built.stdout.splitlines() if ": " in line)
  for split in ("train", "test"):
    total, positive = (int(w) for w in lines[f"[climjax] {split}"].replace(",", "").split()[::2])
    assert positive > 0 and total == 2 * positive
  assert "--config=configs/wf.py" in built.stdout and "--config.data.source=netcdf" in built.stdout


def test_synthetic_detection_with_an_event_climate(tmp_path):
  built = _run(
    "--task=detection", "--source=synthetic", "--config_arg=tiny", "--num_train=2",
    "--num_test=1", "--tc_rate=2", "--ar_intensity=1.5", f"--data_dir={tmp_path}",
  )  # fmt: skip
  assert built.returncode == 0, built.stderr
  assert "-tc_rate2-ar_intensity1.5" in built.stdout
  assert "--config.data.tc_rate=2.0" in built.stdout
  assert "--config.data.ar_intensity=1.5" in built.stdout
  assert "note: the experiment config has no" not in built.stdout  # configs/semisup.py has them
  refused = _run("--task=detection", "--source=synthetic", "--tc_rate=-1", f"--data_dir={tmp_path}")
  assert "tc_rate must be in [0, 10]" in _one_error_line(refused)


@pytest.fixture(scope="module")
def refused_inputs(tmp_path_factory):
  """Files that must be refused: a second grid, a truncated file, PSL in hPa with no units."""
  import netCDF4

  root = tmp_path_factory.mktemp("refused")
  ds, _ = synthetic.generate_fields(2, seed=3, nlat=NLAT, nlon=NLON)
  netcdf.write_cam5_netcdf(ds, root / "grid_a.nc")
  coarse, _ = synthetic.generate_fields(4, seed=3, nlat=NLAT // 2, nlon=NLON // 2)
  netcdf.write_cam5_netcdf(coarse.isel(time=slice(2, 4)), root / "grid_b.nc")  # the next times
  with open(root / "grid_a.nc", "rb") as f:
    whole = f.read()
  with open(root / "truncated.nc", "wb") as f:
    f.write(whole[: len(whole) // 2])  # a copy cut off halfway, as a failed transfer leaves it
  netcdf.write_cam5_netcdf(ds, root / "hpa.nc")
  with netCDF4.Dataset(root / "hpa.nc", "a") as f:
    psl = f["PSL"]
    psl[:] = psl[:] / 100.0
    psl.delncattr("units")
  return root


@pytest.mark.reliability
@pytest.mark.parametrize(
  "pattern, expected",
  [
    ("nothing_*.nc", ("nothing_*.nc", "no files match")),
    ("grid_*.nc", ("grid_b.nc", "grid 48x72 differs from", "grid_a.nc")),
    ("truncated.nc", ("truncated.nc", "cannot be read as netCDF")),
    ("hpa.nc", ("hpa.nc", "variable PSL", "outside the plausible", "units attribute")),
  ],
  ids=["no-file", "grids-differ", "truncated", "psl-in-hpa"],
)  # fmt: skip
def test_broken_inputs_are_refused_in_one_line_and_leave_nothing(
  tmp_path, refused_inputs, pattern, expected
):
  data_dir = tmp_path / "tfds"
  result = _run(
    "--task=detection", "--source=netcdf", f"--input={refused_inputs / pattern}",
    f"--data_dir={data_dir}",
  )  # fmt: skip
  line = _one_error_line(result)
  assert all(part in line for part in expected), line
  assert "Traceback" not in result.stderr
  assert not _files(data_dir) if data_dir.exists() else True  # no partial dataset
