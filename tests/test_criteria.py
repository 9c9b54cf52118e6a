"""What heuristic labels rest on (#19): criteria applied and skipped per candidate, per track, per
label, in the build's summary, and refused on request (`require_all_criteria`)."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from climjax.data import heuristics, landsea, netcdf, synthetic
from climjax.data.errors import DataError
from climjax.data.heuristics import criteria

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def fields():
  """3 days of the generator's fields at 1.875 deg: TCs tracked, every variable present."""
  ds, _ = synthetic.generate_fields(12, seed=1, nlat=96, nlon=144)
  return ds


def _labels(ds, **kwargs):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # skipped criteria, fronts on TREFHT
    return heuristics.label_events(ds, **kwargs)


def test_full_fields_give_labels_on_every_criterion(fields):
  labels = _labels(fields)
  assert set(criteria.CRITERIA_COLUMNS) <= set(labels.columns)
  tc = labels[labels["class_name"] == "TC"]
  assert len(tc) > 0
  assert (tc["criteria"] == "closed_low,vorticity,warm_core,thickness,wind").all()
  assert not labels["reduced"].any() and (labels["criteria_skipped"] == "").all()
  counts = labels.attrs["criteria"]
  assert counts["TC"] == {"labels": len(tc), "reduced": 0, "skipped": {}}
  assert sum(c["labels"] for c in counts.values()) == len(labels)


def test_a_missing_variable_marks_every_label_that_skipped_its_criterion(fields):
  labels = _labels(fields.drop_vars(["Z200", "Z1000"]))
  tc = labels[labels["class_name"] == "TC"]
  assert len(tc) > 0 and tc["reduced"].all()
  assert (tc["criteria_skipped"] == "thickness").all()
  assert (tc["criteria"] == "closed_low,vorticity,warm_core,wind").all()
  # The thickness is no criterion of the other classes: their labels stand on all of theirs.
  assert not labels.loc[labels["class_name"] != "TC", "reduced"].any()
  counts = labels.attrs["criteria"]
  assert counts["TC"] == {"labels": len(tc), "reduced": len(tc), "skipped": {"thickness": len(tc)}}
  assert criteria.describe(counts).startswith(f"TD 0 of {counts['TD']['labels']}, TC {len(tc)} of")
  assert "(thickness skipped)" in criteria.describe(counts)


def test_require_all_criteria_refuses_in_one_line_naming_the_variables(fields):
  with pytest.raises(DataError) as e:
    _labels(fields.drop_vars(["Z200", "Z1000"]), require_all_criteria=True)
  message = str(e.value)
  assert "\n" not in message and "Z200, Z1000" in message and "thickness" in message
  # With every variable there, nothing is refused and nothing left out.
  assert len(_labels(fields, require_all_criteria=True)) == len(_labels(fields))


def test_a_wind_that_cannot_be_measured_reduces_that_candidate_alone(fields):
  ds = fields.copy(deep=True)
  for name in ("UBOT", "VBOT"):
    ds[name].values[0] = np.nan  # no wind at the first step only (vorticity is U850/V850's)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    candidates = heuristics.detect_tropical_cyclones(ds)
    strict = heuristics.detect_tropical_cyclones(ds, require_all_criteria=True)
  first = candidates[candidates["time_index"] == 0]
  later = candidates[candidates["time_index"] > 0]
  assert len(first) > 0 and len(later) > 0
  assert first["reduced"].all() and first["criteria_skipped"].str.contains("wind").all()
  assert not later["reduced"].any()
  # require_all_criteria drops exactly the candidates that could not be measured.
  assert len(strict) == len(later) and (strict["time_index"] > 0).all()


def test_a_track_is_reduced_when_any_of_its_points_is(fields):
  candidates = heuristics.detect_tropical_cyclones(fields)
  tracks = heuristics.track_cyclones(candidates)
  assert len(tracks) > 0 and not tracks["reduced"].any()
  # Mark the candidate behind one tracked point as having skipped the warm core.
  point = tracks.iloc[0]
  at = (
    (candidates["time_index"] == point["time_index"])
    & np.isclose(candidates["lat"], point["lat"])
    & np.isclose(candidates["lon"], point["lon"])
  )
  assert at.sum() == 1
  marked = candidates.copy()
  marked.attrs = dict(candidates.attrs)
  marked.loc[at, "criteria_skipped"] = "warm_core"
  marked.loc[at, "reduced"] = True
  again = heuristics.track_cyclones(marked)
  same = again["track_id"] == point["track_id"]
  assert same.sum() > 1 and again.loc[same, "reduced"].all()
  assert (again.loc[same, "criteria_skipped"] == "warm_core").all()
  assert "warm_core" not in ",".join(again.loc[same, "criteria"])
  assert not again.loc[~same, "reduced"].any()


@pytest.fixture(scope="module")
def no_thickness(tmp_path_factory):
  """A CAM5 netCDF file without Z200 and Z1000 (the thickness criterion's variables)."""
  root = tmp_path_factory.mktemp("criteria")
  ds, _ = synthetic.generate_fields(12, seed=1, nlat=96, nlon=144)
  land = landsea.land_fraction(ds["lat"].values, ds["lon"].values)
  ds["LANDFRAC"] = (("time", "lat", "lon"), np.broadcast_to(land, ds["PSL"].shape).copy())
  path = root / "no_thickness.nc"
  netcdf.write_cam5_netcdf(ds.drop_vars(["Z200", "Z1000"]), path)
  return path


def _build(*args):
  return subprocess.run(
    [sys.executable, os.path.join(REPO, "launch", "build_dataset.py"), *args],
    capture_output=True, text=True, cwd=REPO, timeout=300,
    env={**os.environ, "PYTHONPATH": REPO},
  )  # fmt: skip


def test_build_dataset_counts_reduced_labels_and_refuses_them_on_request(tmp_path, no_thickness):
  common = ["--task=tc", "--source=netcdf", f"--input={no_thickness}", "--test_fraction=0.25"]
  data_dir = tmp_path / "tfds"
  built = _build(*common, f"--data_dir={data_dir}")
  assert built.returncode == 0, built.stderr[-3000:]
  said = [line for line in built.stdout.splitlines() if "labels on reduced criteria: TC" in line]
  assert said and "(thickness skipped)" in said[-1], built.stdout[-3000:]
  reduced, total = (int(v) for v in said[-1].split("TC ")[1].split(" (")[0].split(" of "))
  assert reduced == total > 0
  # Recorded beside the dataset too, so a later reader can tell.
  (metadata,) = [
    os.path.join(base, "metadata.json")
    for base, _, names in os.walk(data_dir)
    if "metadata.json" in names
  ]
  with open(metadata) as f:
    assert json.load(f)["criteria"]["TC"] == {
      "labels": total, "reduced": total, "skipped": {"thickness": total}
    }  # fmt: skip

  strict_dir = tmp_path / "strict"
  refused = _build(*common, f"--data_dir={strict_dir}", "--require_all_criteria")
  lines = [line for line in refused.stderr.splitlines() if line.strip()]
  assert refused.returncode == 2 and len(lines) == 1, refused.stderr[-3000:]
  assert lines[0].startswith("climjax: error: ") and "no_thickness.nc" in lines[0]
  assert "Z200, Z1000" in lines[0] and "require_all_criteria" in lines[0]
  assert not any(name.endswith(".array_record-00000-of-00001") or name == "dataset_info.json"
                 for _, _, names in os.walk(strict_dir) for name in names)  # fmt: skip
