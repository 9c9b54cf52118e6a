"""Files from the real world (#15): CF calendars and non-finite values, read or refused alike by
`climjax.data.netcdf`, `launch/build_dataset.py` and the detector's file source (`fields`)."""

import datetime
import importlib.util
import os
import subprocess
import sys

import cftime
import netCDF4
import numpy as np
import pytest
from test_netcdf import _days, _values, write_cam5_history

from climjax.data import extremeweather, fields, netcdf, synthetic, tfds_builders, variables
from climjax.data.errors import DataError

pytestmark = pytest.mark.reliability

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NLAT, NLON, STEPS = 48, 72, 5  # small: the heuristics run, the builds take a second
TEST_FRACTION = "0.4"  # 3 train + 2 test snapshots

# (year, month, day, hour) of the 5 six-hourly snapshots written on each calendar, each on a
# day only some calendars have: 30 February (360_day), 29 February 1900 (Julian only), 29
# February 1200 (proleptic Gregorian, long before 1582); noleap goes from 28 February to March.
CALENDAR_DATES = {
  "noleap": [(2001, 2, 28, 12), (2001, 2, 28, 18), (2001, 3, 1, 0), (2001, 3, 1, 6), (2001, 3, 1, 12)],
  "360_day": [(2000, 2, 29, 18), (2000, 2, 30, 0), (2000, 2, 30, 6), (2000, 2, 30, 12), (2000, 2, 30, 18)],
  "julian": [(1900, 2, 28, 18), (1900, 2, 29, 0), (1900, 2, 29, 6), (1900, 2, 29, 12), (1900, 2, 29, 18)],
  "gregorian": [(2000, 2, 28, 18), (2000, 2, 29, 0), (2000, 2, 29, 6), (2000, 2, 29, 12), (2000, 2, 29, 18)],
  "standard": [(2004, 2, 29, 6), (2004, 2, 29, 12), (2004, 2, 29, 18), (2004, 3, 1, 0), (2004, 3, 1, 6)],
  "proleptic_gregorian": [(1200, 2, 28, 18), (1200, 2, 29, 0), (1200, 2, 29, 6), (1200, 2, 29, 12),
                          (1200, 2, 29, 18)],
}  # fmt: skip


@pytest.fixture(scope="module")
def snapshots():
  """Five small 16-channel CAM5-like snapshots (every channel the detector reads)."""
  ds, _ = synthetic.generate_fields(STEPS, seed=4, nlat=NLAT, nlon=NLON)
  return ds


@pytest.fixture(scope="module")
def calendar_files(snapshots, tmp_path_factory):
  root = tmp_path_factory.mktemp("calendars")
  paths = {}
  for calendar, dates in CALENDAR_DATES.items():
    times = [cftime.datetime(*d, calendar=calendar) for d in dates]
    paths[calendar] = root / f"{calendar}.nc"
    netcdf.write_cam5_netcdf(
      snapshots.assign_coords(time=times), paths[calendar], calendar=calendar
    )
    with netCDF4.Dataset(paths[calendar]) as nc:
      assert nc["time"].calendar == calendar  # the file says the calendar, as archives do
  return paths


def _ymdh(t) -> tuple[int, int, int, int]:
  if isinstance(t, np.datetime64):
    t = datetime.datetime.fromisoformat(str(t.astype("datetime64[s]")))
  return (t.year, t.month, t.day, t.hour)


def _iso(date) -> bytes:
  y, m, d, h = date
  return f"{y:04d}-{m:02d}-{d:02d}T{h:02d}:00:00".encode()


def _build_dataset():
  """launch/build_dataset.py as a module, for builds in this process (no second TF import)."""
  spec = importlib.util.spec_from_file_location(
    "build_dataset", os.path.join(REPO, "launch", "build_dataset.py")
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, os.path.join(REPO, "launch", "build_dataset.py"), *args],
    capture_output=True, text=True, env={**os.environ, "PYTHONPATH": REPO}, cwd=REPO, timeout=300,
  )  # fmt: skip


def _one_error_line(result: subprocess.CompletedProcess) -> str:
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith("climjax: error: "), result.stderr
  assert "Traceback" not in result.stderr + result.stdout
  return lines[0]


def _no_complete_dataset(data_dir) -> None:
  """Nothing a reader would take for a dataset: no dataset_info.json, no split files."""
  for base, _, names in os.walk(data_dir):
    assert "dataset_info.json" not in names, base
    assert not [n for n in names if "array_record" in n], (base, names)


def _detector_config(path, data_dir, **data):
  sys.path.insert(0, REPO)
  from configs import semisup

  config = semisup.get_config("tiny")
  config.data.source = "netcdf"
  config.data.input = str(path)
  config.data.data_dir = str(data_dir)
  config.data.height, config.data.width = NLAT, NLON
  config.data.test_fraction = float(TEST_FRACTION)
  config.data.num_train, config.data.num_test = 3, 2
  for key, value in data.items():
    config.data[key] = value
  return config


# ---------------------------------------------------------------------------
# CF calendars
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("calendar", list(CALENDAR_DATES))
def test_calendars_read_through_the_reader_the_builder_and_the_detector(
  tmp_path, snapshots, calendar_files, calendar, capsys
):
  path, dates = calendar_files[calendar], CALENDAR_DATES[calendar]
  # climjax.data.netcdf
  ds = netcdf.open_fields(str(path))
  assert [_ymdh(t) for t in ds["time"].values] == dates
  assert ds["time"].encoding["calendar"] == calendar
  np.testing.assert_array_equal(ds["PSL"].values, snapshots["PSL"].values)

  # launch/build_dataset.py: the snapshots' time strings are the file's dates, on its calendar.
  data_dir = tmp_path / "tfds"
  args = ["--task=detection", "--source=netcdf", f"--input={path}", f"--data_dir={data_dir}",
          f"--test_fraction={TEST_FRACTION}"]  # fmt: skip
  assert _build_dataset().main(args) == 0
  out = capsys.readouterr().out
  assert "[climjax] train: 3 snapshots" in out and "[climjax] test: 2 snapshots" in out
  (built,) = [d for d in os.listdir(data_dir / "extreme_weather") if "-train3-test2-" in d]

  # The detector's file source finds that dataset and hands out the same dates.
  config = _detector_config(path, data_dir)
  builder = tfds_builders.detection_builder(config.data)
  assert builder.builder_config.name == built
  assert builder.info.metadata["calendar"] == calendar
  sources, _ = tfds_builders.prepare(builder, key="image")
  stored = [sources[s][i]["time"] for s, n in (("train", 3), ("test", 2)) for i in range(n)]
  assert stored == [_iso(d) for d in dates]
  np.testing.assert_array_equal(sources["test"][1]["image"][..., 2], snapshots["PSL"].values[4])
  for split, picked in (("train", dates[:3]), ("test", dates[3:])):
    times = fields.load_split(config.data, split)["times"]
    assert [_ymdh(t) for t in times] == picked, (split, times)
    if calendar in ("noleap", "360_day", "julian"):  # dates numpy's datetime64 cannot hold
      assert all(isinstance(t, cftime.datetime) and t.calendar == calendar for t in times)
    else:
      assert times.dtype.kind == "M"
  assert "labelling" not in capsys.readouterr().out  # found, not built a second time


# ---------------------------------------------------------------------------
# NaN and Inf: refused by default, masked (filled and counted) on request
# ---------------------------------------------------------------------------


def _with_bad_values(path, nan=(), inf=()):
  """A CAM5 file of three steps whose TMQ is NaN (_FillValue) / Inf at (step, y, x) points."""
  tmq, psl = _values("TMQ", range(3)), _values("PSL", range(3))
  for k, y, x in nan:
    tmq[k, y, x] = np.nan
  for k, y, x in inf:
    tmq[k, y, x] = np.inf
  write_cam5_history(path, _days(0, 3), {"TMQ": tmq, "PSL": psl})
  with netCDF4.Dataset(path, "a") as nc:  # NaN written as the fill value, as archives do
    nc["TMQ"].setncattr("missing_value", np.float32(1e36))
    nc["TMQ"][:] = np.where(np.isnan(tmq), np.float32(1e36), tmq)
  return tmq


def test_reader_nonfinite_policies(tmp_path):
  path = tmp_path / "gaps.nc"
  tmq = _with_bad_values(path, nan=[(1, 2, 3), (1, 4, 5)])
  kept = netcdf.open_fields(str(path))["TMQ"].values  # "missing": NaN stays NaN
  np.testing.assert_array_equal(kept, tmq)
  refusing = netcdf.open_fields(str(path), nonfinite="refuse")
  np.testing.assert_array_equal(refusing["TMQ"][0].values, tmq[0])  # a good step reads
  with pytest.raises(DataError) as e:
    refusing["TMQ"].values  # noqa: B018
  message = str(e.value)
  assert "\n" not in message and message.startswith(f"{path}: variable TMQ: time step 1 holds 2 ")
  assert "data.nonfinite='mask'" in message  # the way out is named
  with pytest.raises(ValueError, match="nonfinite must be one of"):
    netcdf.open_fields(str(path), nonfinite="zero")

  path = tmp_path / "inf.nc"
  tmq = _with_bad_values(path, inf=[(0, 0, 0)])
  with pytest.raises(DataError, match=r"inf\.nc: variable TMQ: time step 0 holds infinite"):
    netcdf.open_fields(str(path))["TMQ"].values  # noqa: B018
  masked = netcdf.open_fields(str(path), nonfinite="mask")["TMQ"].values
  assert np.isnan(masked[0, 0, 0])  # read as missing, for the caller to fill and count
  np.testing.assert_array_equal(masked.ravel()[1:], tmq.ravel()[1:])


def test_nonfinite_is_a_checked_config_field(tmp_path):
  base = {"source": "netcdf", "input": str(tmp_path / "x.nc"), "data_dir": str(tmp_path),
          "num_train": 0, "num_test": 0, "seed": 0}  # fmt: skip
  import ml_collections

  with pytest.raises(ValueError, match=r"data.nonfinite must be one of \('refuse', 'mask'\)"):
    tfds_builders.patches_config(ml_collections.ConfigDict({**base, "nonfinite": "zero"}), "tc")
  synthetic_mask = {**base, "source": "synthetic", "input": "", "num_train": 1, "num_test": 1,
                    "nonfinite": "mask"}  # fmt: skip
  with pytest.raises(ValueError, match="applies to file sources"):
    tfds_builders.patches_config(ml_collections.ConfigDict(synthetic_mask), "tc")
  plain = tfds_builders.patches_config(ml_collections.ConfigDict(base), "tc").name
  masked = tfds_builders.patches_config(ml_collections.ConfigDict({**base, "nonfinite": "mask"}),
                                        "tc").name  # fmt: skip
  assert masked == plain + "-nonfinite_masked"  # and the name without it is as it was


@pytest.fixture(scope="module")
def gappy(snapshots, tmp_path_factory):
  """The snapshots with 2 TMQ values missing at step 1 and 1 PSL value infinite at step 2."""
  ds = snapshots.copy(deep=True)
  ds["TMQ"].values[1, 10, 20] = ds["TMQ"].values[1, 30, 40] = np.nan
  ds["PSL"].values[2, 5, 6] = np.inf
  path = tmp_path_factory.mktemp("gappy") / "gappy.nc"
  netcdf.write_cam5_netcdf(ds, path)
  return path


def test_build_dataset_refuses_nan_by_default_in_one_line(tmp_path, gappy):
  data_dir = tmp_path / "tfds"
  refused = _run("--task=detection", "--source=netcdf", f"--input={gappy}",
                 f"--data_dir={data_dir}", f"--test_fraction={TEST_FRACTION}")  # fmt: skip
  line = _one_error_line(refused)
  assert f"{gappy}: variable " in line and " time step " in line, line
  assert ("variable TMQ: time step 1 holds 2 NaN" in line) or (
    "variable PSL: time step 2 holds infinite" in line
  ), line
  _no_complete_dataset(data_dir)


def test_build_dataset_masks_counts_and_names_on_request(tmp_path, snapshots, gappy, capsys):
  data_dir = tmp_path / "tfds"
  args = ["--task=detection", "--source=netcdf", f"--input={gappy}", f"--data_dir={data_dir}",
          f"--test_fraction={TEST_FRACTION}", "--nonfinite=mask"]  # fmt: skip
  assert _build_dataset().main(args) == 0
  out = capsys.readouterr().out
  assert "detection train: data.nonfinite='mask' filled 3 values (TMQ 2, PSL 1)" in out, out
  assert "detection test: data.nonfinite" not in out  # nothing to fill there
  assert "--config.data.nonfinite=mask" in out
  (built,) = os.listdir(data_dir / "extreme_weather")
  assert built.endswith("-nonfinite_masked") and "-train3-test2-" in built

  config = _detector_config(gappy, data_dir, nonfinite="mask")
  builder = tfds_builders.detection_builder(config.data)
  assert builder.builder_config.name == built
  assert builder.info.metadata["nonfinite"] == {
    "policy": "mask",
    "masked": {"train": {"TMQ": 2, "PSL": 1}, "test": {}},
  }
  train = fields.load_split(config.data, "train")
  said = capsys.readouterr().out
  assert "data.nonfinite='mask': 3 NaN or Inf values of the train split" in said, said
  assert "(PSL 1, TMQ 2)" in said
  images = train["fields"]
  assert np.isfinite(images).all()
  tmq, psl = (variables.EXTREMEWEATHER_CHANNELS.index(n) for n in ("TMQ", "PSL"))
  for step, channel, points in ((1, tmq, [(10, 20), (30, 40)]), (2, psl, [(5, 6)])):
    name = variables.EXTREMEWEATHER_CHANNELS[channel]
    original = snapshots[name].values[step].astype(np.float64)
    good = np.ones(original.shape, bool)
    for y, x in points:
      good[y, x] = False
    for y, x in points:  # the snapshot's mean of the field's finite values
      np.testing.assert_allclose(images[step, y, x, channel], original[good].mean(), rtol=1e-6)
    np.testing.assert_array_equal(images[step, ..., channel][good], original[good])


def test_extremeweather_nonfinite_refused_or_masked(tmp_path):
  images = np.random.default_rng(0).normal(size=(5, 16, 24, 16)).astype(np.float32)
  images[3, 2, 2, 6] = np.nan  # image 3, TMQ
  path = tmp_path / "climo_1980.h5"
  extremeweather.write_extremeweather(path, images, [np.zeros((0, 4))] * 5, [np.zeros(0)] * 5)
  import ml_collections

  config = ml_collections.ConfigDict({"source": "extremeweather", "input": str(path),
                                      "data_dir": str(tmp_path / "tfds"), "num_train": 0,
                                      "num_test": 0, "seed": 0, "test_fraction": 0.4})  # fmt: skip
  with pytest.raises(DataError) as e:
    tfds_builders.prepare(tfds_builders.detection_builder(config), key="image")
  message = str(e.value)
  assert "\n" not in message and message.startswith(f"{path}: variable images: image 3 channel TMQ")
  _no_complete_dataset(tmp_path / "tfds")
  config.nonfinite = "mask"
  builder = tfds_builders.detection_builder(config)
  assert builder.builder_config.name.endswith("-nonfinite_masked")
  sources, _ = tfds_builders.prepare(builder, key="image")
  image = sources["test"][0]["image"]  # image 3 is the first test snapshot
  expected = np.delete(images[3, ..., 6].ravel(), 2 * 24 + 2).astype(np.float64).mean()
  np.testing.assert_allclose(image[2, 2, 6], expected, rtol=1e-5)
  assert builder.info.metadata["nonfinite"]["masked"] == {"train": {}, "test": {"TMQ": 1}}
