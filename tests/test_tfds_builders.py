"""tfds builders: patches and detection snapshots from synthetic data, netCDF and ExtremeWeather files."""

import glob
import os
import pickle

import h5py
import ml_collections
import numpy as np
import pandas as pd
import pytest

from climjax.data import extremeweather, heuristics, netcdf, synthetic, tfds_builders, variables
from climjax.data.errors import DataError

NLAT, NLON, STEPS = 192, 288, 12  # the coarsest grid on which the TC heuristics track storms


@pytest.fixture(scope="module")
def fields():
  return synthetic.generate_fields(STEPS, seed=1, nlat=NLAT, nlon=NLON)


@pytest.fixture(scope="module")
def files(fields, tmp_path_factory):
  """The same snapshots as CAM5 netCDF (two files along time; PSL under another name) and HDF5."""
  ds, events = fields
  root = tmp_path_factory.mktemp("inputs")
  renamed = ds.rename({"PSL": "pmsl"})  # a name no alias covers: needs variables_map
  netcdf.write_cam5_netcdf(renamed.isel(time=slice(0, 6)), root / "cam5_a.nc")
  netcdf.write_cam5_netcdf(renamed.isel(time=slice(6, None)), root / "cam5_b.nc")
  netcdf.write_cam5_netcdf(ds.drop_vars("PSL").isel(time=slice(0, 4)), root / "nopsl.nc")
  images = np.stack([ds[n].values for n in variables.EXTREMEWEATHER_CHANNELS], axis=-1)
  # Every planted event (up to 24 a snapshot), fronts included: more rows than the released 15.
  rows = synthetic.padded_boxes(events, STEPS, max_boxes=24, classes=(0, 1, 2, 3, 4))
  real = rows[..., 4] >= 0
  extremeweather.write_extremeweather(
    root / "climo_1979.h5",
    images,
    [r[m, :4] for r, m in zip(rows, real, strict=True)],
    [r[m, 4] for r, m in zip(rows, real, strict=True)],
    max_boxes=24,
  )
  return {
    "root": root,
    "netcdf": str(root / "cam5_*.nc"),
    "h5": str(root / "climo_1979.h5"),
    "images": images,
    "rows": rows,
  }


def _config(tmp_path, **overrides) -> ml_collections.ConfigDict:
  config = {
    "source": "synthetic",
    "input": "",
    "data_dir": str(tmp_path / "tfds"),
    "num_train": 0,
    "num_test": 0,
    "seed": 0,
  }
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def _labels(source) -> np.ndarray:
  return np.array([source[i]["label"] for i in range(len(source))])


def _pressure_rise(patch: np.ndarray) -> float:
  """PSL rise (Pa) from the patch centre to a ring 4-6 px out: large for a centred cyclone."""
  psl = patch[..., variables.TC_CHANNELS.index("PSL")]
  h, w = psl.shape
  r = np.hypot(*np.mgrid[:h, :w] - np.array([h // 2, w // 2])[:, None, None])
  return float(psl[(r >= 4) & (r <= 6)].mean() - psl[r <= 1.5].min())


def test_synthetic_names_are_unchanged_and_file_sources_are_named_by_their_input(tmp_path):
  config = _config(tmp_path, num_train=64, num_test=32)
  assert tfds_builders.patches_config(config, "tc").name == "tc-synthetic-train64-test32-seed0"
  a = tfds_builders.patches_config(_config(tmp_path, source="netcdf", input="a/*.nc"), "tc")
  b = tfds_builders.patches_config(_config(tmp_path, source="netcdf", input="b/*.nc"), "tc")
  c = tfds_builders.patches_config(
    _config(tmp_path, source="netcdf", input="a/*.nc", variables_map="msl:PSL"), "tc"
  )
  assert len({a.name, b.name, c.name}) == 3 and a.input == os.path.abspath("a/*.nc")
  with pytest.raises(ValueError, match="variables_map must look like"):
    tfds_builders.patches_config(
      _config(tmp_path, source="netcdf", input="x", variables_map="msl"), "tc"
    )
  with pytest.raises(ValueError, match="needs data.input"):
    tfds_builders.patches_config(_config(tmp_path, source="netcdf"), "tc")


def test_tc_patches_from_netcdf_are_centred_on_tracked_cyclones(tmp_path, fields, files):
  config = _config(tmp_path, source="netcdf", input=files["netcdf"], variables_map="pmsl:PSL")
  builder = tfds_builders.patches_builder(config, "tc")
  sources, stats = tfds_builders.prepare(builder, key="patch")

  # Positives are exactly the tracked candidates of each split (first 10 / last 2 snapshots).
  tracked = heuristics.track_cyclones(heuristics.detect_tropical_cyclones(fields[0]))
  expected = {
    "train": int((tracked["time_index"] < 10).sum()),
    "test": int((tracked["time_index"] >= 10).sum()),
  }
  assert expected["train"] >= 5 and expected["test"] >= 1
  for split, source in sources.items():
    labels = _labels(source)
    assert labels.sum() == expected[split] and (labels == 0).sum() == expected[split]
    first = source[0]
    assert first["patch"].shape == (32, 32, 8) and first["patch"].dtype == np.float32
    rise = np.array([_pressure_rise(source[i]["patch"]) for i in range(len(source))])
    # Every positive is a closed low at its centre (the heuristics demand a 400 Pa rise
    # within 5 deg, ~5 px here); no negative is.
    assert (rise[labels == 1] > 400).all() and (rise[labels == 0] < 400).all()
  assert len(stats["mean"]) == 8 and 9e4 < stats["mean"][0] < 1.1e5  # PSL in Pa


def test_tc_and_wf_patches_from_extremeweather_boxes(tmp_path, files):
  stored = files["rows"][6:, :, 4]  # the boxes the file holds for the test snapshots
  config = _config(
    tmp_path, source="extremeweather", input=files["h5"], test_fraction=0.5, num_train=8
  )
  sources, _ = tfds_builders.prepare(tfds_builders.patches_builder(config, "tc"), key="patch")
  train = _labels(sources["train"])
  assert len(train) == 8 and train.sum() == 4  # capped at 8: 4 positives, 4 negatives
  test = _labels(sources["test"])
  assert test.sum() == (stored == 1).sum() == (test == 0).sum()
  rise = np.array([_pressure_rise(sources["test"][i]["patch"]) for i in range(len(test))])
  assert (rise[test == 1] > 400).all() and (rise[test == 0] < 400).all()

  sources, _ = tfds_builders.prepare(tfds_builders.patches_builder(config, "wf"), key="patch")
  assert sources["test"][0]["patch"].shape == (27, 60, 3)
  assert _labels(sources["test"]).sum() == (stored == variables.FRONT_CLASS_ID).sum()


@pytest.fixture(scope="module")
def one_degree(tmp_path_factory):
  """8 snapshots on a 1 deg grid (the WF patches' spacing) as netCDF, with their events."""
  ds, events = synthetic.generate_fields(8, seed=3, nlat=180, nlon=360)
  path = tmp_path_factory.mktemp("one_degree") / "cam5.nc"
  netcdf.write_cam5_netcdf(ds, path)
  return ds, events, str(path)


def test_wf_patches_from_netcdf_are_centred_on_heuristic_fronts(tmp_path, one_degree):
  ds, events, path = one_degree
  config = _config(tmp_path, source="netcdf", input=path, test_fraction=0.25)
  sources, _ = tfds_builders.prepare(tfds_builders.patches_builder(config, "wf"), key="patch")
  with pytest.warns(UserWarning, match="TREFHT"):
    fronts = heuristics.label_events(ds, classes=("WF",))
  assert len(fronts) >= 8
  for split, frames in (("train", range(0, 6)), ("test", range(6, 8))):
    labels = _labels(sources[split])
    expected = int(fronts["time_index"].isin(frames).sum())  # every front fits: the grid is global
    assert labels.sum() == expected and (labels == 0).sum() == expected
  patch = sources["train"][0]["patch"]
  assert patch.shape == (27, 60, 3) and patch.dtype == np.float32
  # The fronts are the generator's: it plants a cold and a warm front with each ETC.
  score = heuristics.score_labels(fronts, events, 8, classes=("WF",)).iloc[0]
  assert score["recall"] > 0.5 and score["false_alarms_per_snapshot"] < 1


def _boxes_of(example) -> set:
  real = example["mask"] > 0
  assert not example["boxes"][~real].any() and not example["labels"][~real].any()
  return {
    (*map(float, b), int(c))
    for b, c in zip(example["boxes"][real], example["labels"][real], strict=True)
  }


def test_detection_from_synthetic_fields(tmp_path):
  config = _config(tmp_path, height=64, width=96, num_train=3, num_test=2, max_boxes=24)
  builder = tfds_builders.detection_builder(config)
  assert builder.builder_config.name == "synthetic-64x96-train3-test2-seed0-boxes24"
  sources, stats = tfds_builders.prepare(builder, key="image")
  ds, events = synthetic.generate_fields(2, seed=10_000, nlat=64, nlon=96)  # the test split's seed
  rows = synthetic.padded_boxes(events, 2, max_boxes=24)
  for i in range(2):
    example = sources["test"][i]
    assert set(example) == set(tfds_builders.DETECTION_KEYS)
    np.testing.assert_array_equal(example["image"][..., 2], ds["PSL"].values[i])
    real = rows[i, :, 4] >= 0
    assert _boxes_of(example) == {(*map(float, r[:4]), int(r[4])) for r in rows[i][real]}
    assert example["time"] == np.datetime_as_string(ds["time"].values[i], unit="s").encode()
  assert len(sources["train"]) == 3 and len(stats["mean"]) == 16
  np.testing.assert_allclose(builder.info.metadata["lat"], ds["lat"].values)


def test_detection_from_extremeweather_keeps_images_and_boxes(tmp_path, files):
  config = _config(tmp_path, source="extremeweather", input=files["h5"], num_train=2, num_test=1)
  builder = tfds_builders.detection_builder(config)
  assert (builder.builder_config.height, builder.builder_config.width) == (NLAT, NLON)
  sources, _ = tfds_builders.prepare(builder, key="image")
  # The last 2 of 12 snapshots are held out; each split keeps its first num_train / num_test.
  assert len(sources["train"]) == 2 and len(sources["test"]) == 1
  example = sources["test"][0]
  np.testing.assert_array_equal(example["image"], files["images"][10])
  rows = files["rows"][10]
  detector_classes = (rows[:, 4] >= 0) & (rows[:, 4] < 4)  # fronts are not a detector class
  assert _boxes_of(example) == {(*map(float, r[:4]), int(r[4])) for r in rows[detector_classes]}
  assert example["time"] == b"climo_1979.h5[10]"


def test_detection_from_netcdf_boxes_the_heuristics_events(tmp_path, fields, files):
  ds, events = fields
  config = _config(
    tmp_path,
    source="netcdf",
    input=files["netcdf"],
    variables_map="pmsl:PSL",
    num_train=4,
    num_test=1,
  )
  sources, _ = tfds_builders.prepare(tfds_builders.detection_builder(config), key="image")
  example = sources["train"][3]
  np.testing.assert_array_equal(example["image"], files["images"][3])
  found = _boxes_of(example)
  # The boxes are those of heuristics.label_events, every detector class.
  labels = heuristics.label_events(ds, classes=variables.CLASS_NAMES)
  here = labels[labels["time_index"] == 3]
  rows = here.rename(columns={"time_index": "frame", "y": "cy", "x": "cx"})
  boxes, classes, mask, _ = tfds_builders._pad_boxes(rows, NLAT, NLON, 15)
  real = mask > 0
  assert found == {
    (*map(float, b), int(c)) for b, c in zip(boxes[real], classes[real], strict=True)
  }
  assert {c for *_, c in found} >= {variables.CLASS_IDS["ETC"], variables.CLASS_IDS["AR"]}
  assert set(labels["class_name"]) == set(variables.CLASS_NAMES)  # TDs and TCs on other steps
  planted = events[events["time_index"] == 3]
  for *box, c in found:  # TC and AR boxes overlap a planted event of their class (TC may be TD)
    ymin, xmin, ymax, xmax = box
    assert 0 <= ymin < ymax <= NLAT and 0 <= xmin < xmax <= NLON
    if c not in (variables.CLASS_IDS["TC"], variables.CLASS_IDS["AR"]):
      continue
    same = planted[planted["class_id"].isin([c, variables.CLASS_IDS["TD"]] if c == 1 else [c])]
    assert (
      (same["ymin"] < ymax) & (same["ymax"] > ymin) & (same["xmin"] < xmax) & (same["xmax"] > xmin)
    ).any()


def test_synthetic_detection_with_another_event_climate(tmp_path):
  config = _config(tmp_path, height=64, width=96, num_train=2, num_test=1, max_boxes=24)
  config.tc_rate, config.ar_intensity = 3.0, 1.0
  builder = tfds_builders.detection_builder(config)
  assert builder.builder_config.name == "synthetic-64x96-train2-test1-seed0-boxes24-tc_rate3"
  sources, _ = tfds_builders.prepare(builder, key="image")
  ds, events = synthetic.generate_fields(2, seed=0, nlat=64, nlon=96, rates={"TC": 3.0})
  rows = synthetic.padded_boxes(events, 2, max_boxes=24)
  example = sources["train"][1]
  np.testing.assert_array_equal(example["image"][..., 2], ds["PSL"].values[1])
  real = rows[1, :, 4] >= 0
  assert _boxes_of(example) == {(*map(float, r[:4]), int(r[4])) for r in rows[1][real]}
  config.tc_rate = -1.0
  with pytest.raises(ValueError, match="tc_rate must be in"):
    tfds_builders.detection_builder(config)


def test_bad_input_names_the_file_and_the_variable(tmp_path, files):
  # PSL under a name no alias covers, and no variables_map.
  config = _config(tmp_path, source="netcdf", input=files["netcdf"])
  with pytest.raises(DataError) as error:
    tfds_builders.prepare(tfds_builders.patches_builder(config, "tc"), key="patch")
  assert "cam5_a.nc" in str(error.value) and "variable PSL" in str(error.value)
  assert "\n" not in str(error.value)
  with pytest.raises(DataError, match=r"nopsl\.nc.*variable PSL"):
    tfds_builders.detection_builder(
      _config(tmp_path, source="netcdf", input=str(files["root"] / "nopsl.nc"))
    ).download_and_prepare()
  bad = files["root"] / "bad_boxes.h5"
  with h5py.File(bad, "w") as f:
    f["images"] = np.zeros((2, 16, 8, 12), np.float32)
    f["boxes"] = np.array([[[1, 1, 3, 3, 9]], [[-1] * 5]], np.int32)
  with pytest.raises(DataError, match=r"bad_boxes\.h5: variable boxes: class ids"):
    tfds_builders.detection_builder(_config(tmp_path, source="extremeweather", input=str(bad)))


def test_a_failed_build_leaves_nothing_behind(tmp_path, fields, files):
  ds, _ = fields
  # The last snapshot's precipitation is missing: the train split is written, then reading fails.
  broken = ds.copy(deep=True)
  broken["PRECT"].values[-1] = np.nan
  netcdf.write_cam5_netcdf(broken, tmp_path / "broken.nc")
  config = _config(tmp_path, source="netcdf", input=str(tmp_path / "broken.nc"))
  with pytest.raises(DataError, match=r"broken\.nc: variable PRECT: time step 11 is all NaN"):
    tfds_builders.prepare(tfds_builders.detection_builder(config), key="image")
  left = glob.glob(str(tmp_path / "tfds" / "**" / "*"), recursive=True)
  assert left and not [p for p in left if os.path.isfile(p) or "incomplete" in p], left


def test_decoded_cache_gives_the_records_and_pad_boxes_wraps_the_seam(tmp_path):
  config = _config(tmp_path, num_train=300, num_test=10)
  builder = tfds_builders.patches_builder(config, "tc")
  records, stats = tfds_builders.prepare(builder, key="patch", cache=False)
  decoded, again = tfds_builders.prepare(builder, key="patch", cache=True)
  assert isinstance(decoded["train"], tfds_builders.DecodedSource)
  np.testing.assert_array_equal(again["std"], stats["std"])
  picks = [299, 3, 3, 150]
  for a, b in zip(
    records["train"].__getitems__(picks), decoded["train"].__getitems__(picks), strict=True
  ):
    np.testing.assert_array_equal(a["patch"], b["patch"])
    assert a["label"] == b["label"]
  batch = decoded["train"].read_batch(picks)
  assert batch["patch"].shape == (4, 32, 32, 8) and batch["label"].shape == (4,)
  # Worker processes reopen the files instead of receiving the arrays.
  reopened = pickle.loads(pickle.dumps(decoded["train"]))
  assert len(pickle.dumps(decoded["train"])) < 1000
  np.testing.assert_array_equal(reopened[150]["patch"], records["train"][150]["patch"])

  events = pd.DataFrame(
    # frame, class, box edges (x continuing past the seam or before 0), centre (cy, cx)
    [
      (0, 1, 10.0, 95.0, 20.0, 101.0, 15.0, 95.5),
      (0, 3, 40.0, -4.0, 50.0, 6.0, 45.0, 1.0),
      (0, 2, -3.0, 10.0, 5.0, 30.0, 1.0, 20.0),
    ],
    columns=tfds_builders.EVENT_COLUMNS,
  )
  boxes, labels, mask, dropped = tfds_builders._pad_boxes(events, 64, 96, 4)
  assert dropped == 0 and mask.tolist() == [1.0, 1.0, 1.0, 0.0] and not boxes[3].any()
  assert [
    tuple(b) + (c,) for b, c in zip(boxes[:3].tolist(), labels[:3].tolist(), strict=True)
  ] == [
    (0.0, 10.0, 5.0, 30.0, 2),  # clipped at the south edge
    (40.0, 0.0, 50.0, 6.0, 3),  # across the seam, centre in column 1: kept at the west edge
    (10.0, 95.0, 20.0, 96.0, 1),  # across the seam, centre in column 95: kept at the east edge
  ]  # largest first
  boxes, labels, mask, dropped = tfds_builders._pad_boxes(events, 64, 96, 2)
  assert dropped == 1 and labels.tolist() == [2, 3]  # the smallest goes
