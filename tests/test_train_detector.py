"""The detector's training loop end to end on the tiny config: workdir, resume, configs."""

import json
import math
import os

import numpy as np
import pytest
import xarray as xr

from climjax.data import fields
from climjax.models import detector
from climjax.tasks import detection
from climjax.training import train
from climjax.training.validate import ConfigError
from configs import semisup, semisup_labels


@pytest.fixture(scope="module", autouse=True)
def generate_once():
  # The resumed run regenerates the same synthetic fields; generate them once.
  original, cache = detection.load_split, {}

  def load_split(data_config, split, **kwargs):
    key = (repr(data_config), split, repr(sorted(kwargs.items())))
    if key not in cache:
      cache[key] = original(data_config, split, **kwargs)
    return cache[key]

  detection.load_split = load_split
  yield
  detection.load_split = original


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("semisup_tiny"))
  config = semisup.get_config("tiny")
  config.data.labelled_fraction = 0.5
  summary = train.train_and_evaluate(config, workdir)
  return config, workdir, summary


def test_workdir(tiny_run):
  config, workdir, summary = tiny_run
  for key in ("map@0.1", "map@0.5", "reconstruction_mse", "wall_seconds", "num_parameters"):
    assert key in summary
  assert set(summary["ap@0.5"]) == {"TD", "TC", "ETC", "AR"}
  assert 0.0 <= summary["map@0.1"] <= 1.0 and math.isfinite(summary["reconstruction_mse"])
  assert summary["steps"] == config.train.steps
  assert summary["train_step_compilations"] == 1
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["num_parameters"] == summary["num_parameters"]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  held_out = records.pop()  # the final evaluation, the last point of curves.png's mAP
  assert held_out["step"] == 6 and "test_map@0.5" in held_out and "loss" not in held_out
  assert [r["step"] for r in records] == [2, 4, 6]
  # Half the fields are labelled: a batch of 4 sees some of each on average.
  assert all("reconstruction_mse" in r and "detection" in r for r in records)
  with open(os.path.join(workdir, "eval", "ap.csv")) as f:
    header, *rows = f.read().splitlines()
  assert header == "metric,TD,TC,ETC,AR,mAP"
  assert [r.split(",")[0] for r in rows] == [
    "ap@0.1",
    "ap@0.5",
    "racah2017_ap@0.1",
    "racah2017_ap@0.5",
  ]
  for name in ("curves.png", "detections_0.png", "reconstruction.png"):
    assert os.path.getsize(os.path.join(workdir, "plots", name)) > 1000
  with xr.open_dataset(os.path.join(workdir, "predictions.nc")) as ds:
    assert ds.sizes["time"] == config.data.num_test
    assert set(ds.data_vars) >= {"class", "score", "lat_min", "lat_max", "lon_min", "lon_max"}
    real = ds["class"].values >= 0
    assert (ds["lat_min"].values[real] <= ds["lat_max"].values[real]).all()
    assert (ds["score"].values[real] >= config.eval.score_threshold).all()
    # Edges stay in the grid's 0-360 range, and the file says what made it.
    assert (ds["lon_min"].values[real] >= 0).all() and (ds["lon_max"].values[real] <= 360).all()
    assert ds.attrs["climjax_version"] and ds.attrs["git_commit"] and "jax" in ds.attrs["packages"]
    assert ds.attrs["checkpoint_step"] == config.train.steps


def test_resume_continues_from_the_checkpoint(tiny_run):
  config, workdir, _ = tiny_run
  config = semisup.get_config("tiny")
  config.data.labelled_fraction = 0.5
  config.train.steps = 8
  summary = train.train_and_evaluate(config, workdir)
  assert summary["resumed_from_step"] == 6 and summary["steps"] == 8
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    steps = [r["step"] for r in map(json.loads, f) if "loss" in r]  # training records
  assert steps == [2, 4, 6, 8]


def test_labelled_mask():
  mask = fields.labelled_mask(100, 0.25, seed=3)
  assert mask.sum() == 25
  np.testing.assert_array_equal(mask, fields.labelled_mask(100, 0.25, seed=3))
  assert fields.labelled_mask(10, 0.0, seed=0).sum() == 0


def test_configs_validate():
  for arg in (None, "tiny", "paper"):
    train.validate_config(semisup.get_config(arg))
  bad = semisup.get_config("tiny")
  bad.data.height = 60
  with pytest.raises(ConfigError, match="multiples of the 8-pixel cell"):
    train.validate_config(bad)
  bad = semisup.get_config("tiny")
  bad.data.labelled_fraction = 1.5
  with pytest.raises(ConfigError, match="labelled_fraction"):
    train.validate_config(bad)


def test_paper_config_network():
  config = semisup.get_config("paper")
  model = detector.make_detector(config.model)
  shape = detector.input_shape(config.model, config.data.height, config.data.width, 16)
  assert detector.count_parameters(model, shape) == 132_934_682
  assert model.cell_size == 64


def test_label_sweep():
  sweep = semisup_labels.get_sweep()
  assert len(sweep) == 36
  for point in sweep:
    config = semisup_labels.get_config("tiny")
    for key, value in point.items():
      if key != "name":
        config.update_from_flattened_dict({key: value})
    train.validate_config(config)
    assert config.seed == point["seed"]
  study = semisup_labels.get_config()  # the study's budget, its fields generated once
  assert study.train.steps == semisup_labels.STUDY_STEPS and study.data.synthetic_cache


@pytest.mark.parametrize("temporal, images_per_window", [("pool", 1), ("keep", 2)])
def test_3d_network_trains_on_windows_of_fields(tmp_path, temporal, images_per_window):
  config = semisup.get_config("tiny")
  config.model.time_steps = 2
  config.model.temporal = temporal
  config.model.width = 1 / 64
  config.model.conv_impl = "xla"  # compiles faster; the kernels are tested in test_detector
  config.train.steps = 2
  config.data.num_train, config.data.num_test = 6, 3
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["steps"] == 2 and math.isfinite(summary["reconstruction_mse"])
  with xr.open_dataset(tmp_path / "predictions.nc") as ds:
    # "pool" predicts the last field of each window, "keep" both fields.
    assert ds.sizes["time"] == 3 * images_per_window


def test_windows_view():
  snapshots = np.arange(5 * 2 * 3 * 1, dtype=np.float32).reshape(5, 2, 3, 1)
  windows = fields.Windows(snapshots, 3)
  assert windows.shape == (3, 3, 2, 3, 1) and len(windows) == 3
  np.testing.assert_array_equal(windows[1], snapshots[1:4])
  np.testing.assert_array_equal(windows[-1], snapshots[2:5])
  np.testing.assert_array_equal(windows[:2], np.stack([snapshots[0:3], snapshots[1:4]]))
  with pytest.raises(IndexError):
    windows[3]


@pytest.fixture(scope="module")
def extremeweather_file(tmp_path_factory):
  """Ten snapshots of the tiny grid written as a released-style ExtremeWeather HDF5 file."""
  from climjax.data import extremeweather, synthetic
  from climjax.data.variables import EXTREMEWEATHER_CHANNELS

  config = semisup.get_config("tiny")
  h, w = config.data.height, config.data.width
  ds, events = synthetic.generate_fields(10, seed=3, nlat=h, nlon=w)
  images = np.stack([ds[n].values for n in EXTREMEWEATHER_CHANNELS], axis=-1)
  rows = synthetic.padded_boxes(events, 10, max_boxes=15)
  real = rows[..., 4] >= 0
  path = tmp_path_factory.mktemp("ew") / "climo_1980.h5"
  extremeweather.write_extremeweather(
    path,
    images,
    [r[m, :4] for r, m in zip(rows, real, strict=True)],
    [r[m, 4] for r, m in zip(rows, real, strict=True)],
  )
  return str(path), rows


def test_trains_on_extremeweather_files(tmp_path, extremeweather_file):
  path, rows = extremeweather_file
  config = semisup.get_config("tiny")
  config.data.source = "extremeweather"
  config.data.input = path
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.num_train = config.data.num_test = 0  # every snapshot: 8 train, 2 test
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["data_source"] == "extremeweather"
  assert summary["num_test_fields"] == 2
  assert summary["num_test_boxes"] == int((rows[8:, :, 4] >= 0).sum())
  assert math.isfinite(summary["reconstruction_mse"])
  with xr.open_dataset(tmp_path / "run" / "predictions.nc") as ds:
    assert ds.sizes["time"] == 2
  assert os.path.exists(tmp_path / "run" / "plots" / "detections_0.png")


def test_file_grid_must_match_the_config(tmp_path, extremeweather_file):
  config = semisup.get_config("tiny")
  config.data.source = "extremeweather"
  config.data.input = extremeweather_file[0]
  config.data.data_dir = str(tmp_path / "tfds")
  config.data.height, config.data.width = 128, 192
  with pytest.raises(ConfigError, match=r"64x96 grid .* --config.data.height=64"):
    train.train_and_evaluate(config, str(tmp_path / "run"))


def test_file_source_needs_input(tmp_path):
  config = semisup.get_config("tiny")
  config.data.source = "netcdf"
  with pytest.raises(ConfigError, match="needs data.input"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
