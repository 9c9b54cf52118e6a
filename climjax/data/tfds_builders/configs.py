"""Builder configs: which dataset a `config.data` names, and the settings the builders share.

One config per (task, source, input, sizes, seed), so datasets of different
sizes or inputs never collide; for file sources the name carries a digest of
the absolute input path and how it is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping

import numpy as np
import tensorflow_datasets as tfds

from climjax.data import variables

# Patch shape (lat, lon) of each supervised task (Liu et al. 2016).
PATCH_SHAPES: dict[str, tuple[int, int]] = {"tc": (32, 32), "ar": (148, 224), "wf": (27, 60)}
# Grid spacing (deg lat, deg lon) a patch is defined on: that of `synthetic` / `patches`.
PATCH_SPACING: dict[str, tuple[float, float]] = {
  "tc": (180.0 / 768, 360.0 / 1152),
  "ar": (180.0 / 768, 360.0 / 1152),
  "wf": (1.0, 1.0),
}
# |latitude| band (deg) where negatives of each task are centred: where its events live.
NEGATIVE_LAT_BANDS: dict[str, tuple[float, float]] = {
  "tc": (0.0, 40.0),
  "ar": (20.0, 70.0),
  "wf": (25.0, 60.0),
}
# Class id of each task's events in the ExtremeWeather boxes.
TASK_CLASS_IDS: dict[str, int] = {
  "tc": variables.CLASS_IDS["TC"],
  "ar": variables.CLASS_IDS["AR"],
  "wf": variables.FRONT_CLASS_ID,
}
SOURCES: tuple[str, ...] = ("synthetic", "netcdf", "extremeweather")
# File sources: a NaN or Inf in a field is refused, or masked (filled and counted; frames.py).
NONFINITE: tuple[str, ...] = ("refuse", "mask")
DEFAULT_DATA_DIR = "runs/tfds"
DEFAULT_TEST_FRACTION = 0.2
DETECTION_MAX_BOXES = 15  # rows per image in the released ExtremeWeather files

_SPLIT_IDS = {"train": 0, "test": 1}

_LOG_EVERY_S = 10.0


def chunk_seed(seed: int, split: str, chunk: int) -> int:
  """Independent, reproducible seed for one chunk of one split."""
  return int(np.random.SeedSequence([seed, _SPLIT_IDS[split], chunk]).generate_state(1)[0])


def _log(message: str) -> None:
  print(f"[climjax] {message}", flush=True)


def parse_variables_map(value) -> dict[str, str]:
  """`"msl:PSL,tcw:TMQ"` (or a mapping) -> {"msl": "PSL", "tcw": "TMQ"}: file names -> CAM5 names."""
  if not value:
    return {}
  if isinstance(value, Mapping) or hasattr(value, "items"):
    pairs = [(str(k), str(v)) for k, v in value.items()]
  else:
    pairs = []
    for item in str(value).split(","):
      name, sep, target = item.partition(":")
      if not sep or not name.strip() or not target.strip():
        raise ValueError(
          f"variables_map must look like 'msl:PSL,tcw:TMQ' (name in the file:CAM5 name), "
          f"got {value!r}"
        )
      pairs.append((name.strip(), target.strip()))
  known = set(variables.CAM5_VARIABLES) | {"LANDFRAC"}
  for name, target in pairs:
    if target not in known:
      raise ValueError(
        f"variables_map: {name}:{target} maps onto {target!r}, which is not a CAM5 variable "
        f"({', '.join(sorted(known))})"
      )
  return dict(pairs)


def _canonical_map(value) -> str:
  """The variables map as a sorted 'a:B,c:D' string (part of the dataset's identity)."""
  return ",".join(f"{k}:{v}" for k, v in sorted(parse_variables_map(value).items()))


def _file_fields(data_config, source: str) -> dict:
  """The config fields that say which files a dataset comes from, checked and normalised."""
  if source not in SOURCES:
    raise ValueError(f"data.source must be one of {SOURCES}, got {source!r}")
  variables_map = _canonical_map(data_config.get("variables_map", ""))
  box_order = data_config.get("box_order", "") or ""
  test_fraction = float(data_config.get("test_fraction", DEFAULT_TEST_FRACTION))
  if source == "synthetic":
    return {"input": "", "variables_map": "", "box_order": "", "test_fraction": test_fraction}
  given = data_config.get("input", "") or ""
  if not given:
    raise ValueError(f"data.source={source!r} needs data.input: a file, directory or glob")
  if os.path.isdir(given):
    given = os.path.join(given, "*.nc" if source == "netcdf" else "*.h5")
  if variables_map and source == "extremeweather":
    raise ValueError(
      "data.variables_map applies to netCDF input; ExtremeWeather files have a fixed channel order"
    )
  if box_order and box_order not in ("yxyx", "xxyy"):
    raise ValueError(f"data.box_order must be 'yxyx', 'xxyy' or '' (detect), got {box_order!r}")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"data.test_fraction must be in (0, 1), got {test_fraction}")
  return {
    "input": os.path.abspath(os.path.expanduser(given)),
    "variables_map": variables_map,
    "box_order": box_order,
    "test_fraction": test_fraction,
  }


def _nonfinite(data_config, source: str) -> str:
  """`data.nonfinite` checked: "refuse" (the default) or "mask" (file sources only).

  Not part of `_file_fields` (the digest of the input): "mask" adds
  `NONFINITE_SUFFIX` to the dataset's name instead, so names of datasets
  built before the option existed are unchanged.
  """
  value = data_config.get("nonfinite", "refuse") or "refuse"
  if value not in NONFINITE:
    raise ValueError(f"data.nonfinite must be one of {NONFINITE}, got {value!r}")
  if value == "mask" and source == "synthetic":
    raise ValueError("data.nonfinite='mask' applies to file sources; synthetic fields are finite")
  return value


NONFINITE_SUFFIX = "-nonfinite_masked"
ALL_CRITERIA_SUFFIX = "-all_criteria"


def _require_all_criteria(data_config, source: str) -> bool:
  """`data.require_all_criteria` checked: heuristic labels (netcdf) on every criterion or none.

  True refuses files that lack a criterion's variables and leaves out labels
  that skipped one (`heuristics.criteria`); `ALL_CRITERIA_SUFFIX` then ends
  the dataset's name. Other sources' labels are not heuristic.
  """
  value = data_config.get("require_all_criteria", False)
  if not isinstance(value, bool):
    raise ValueError(f"data.require_all_criteria must be True or False, got {value!r}")
  if value and source != "netcdf":
    raise ValueError(
      f"data.require_all_criteria applies to netcdf input (heuristic labels), not {source!r}"
    )
  return value


def _event_knobs(data_config, source: str) -> str:
  """The synthetic event climate as 'tc_rate=2.0,ar_intensity=1.2' ('' for the default).

  Part of a synthetic dataset's identity; file sources have their own events.
  """
  if source != "synthetic":
    return ""
  from climjax.data import synthetic

  knobs = synthetic.event_knobs(data_config)  # ValueError naming a bad field
  parts = [f"{k.lower()}_rate={v:g}" for k, v in knobs["rates"].items()]
  parts += [f"{k.lower()}_intensity={v:g}" for k, v in knobs["intensities"].items()]
  return ",".join(parts)


def parse_event_knobs(text: str) -> dict[str, dict[str, float]]:
  """`_event_knobs`'s string back to `generate_fields`'s `rates` and `intensities`."""
  from climjax.data import synthetic

  fields = dict(item.split("=") for item in text.split(",") if item)
  return synthetic.event_knobs({k: float(v) for k, v in fields.items()})


def _check_sizes(data_config, source: str) -> None:
  for split in ("train", "test"):
    num = int(data_config.num_train if split == "train" else data_config.num_test)
    if num < (1 if source == "synthetic" else 0):
      what = "at least 1" if source == "synthetic" else ">= 0 (0: every example found)"
      raise ValueError(f"data.num_{split} must be {what} for data.source={source!r}, got {num}")


def _digest(fields: dict) -> str:
  """8 hex digits identifying the input files and how they are read."""
  text = "|".join(f"{k}={fields[k]}" for k in sorted(fields))
  return hashlib.sha1(text.encode()).hexdigest()[:8]


@dataclasses.dataclass
class PatchesConfig(tfds.core.BuilderConfig):
  task: str = "tc"
  source: str = "synthetic"
  input: str = ""
  num_train: int = 0
  num_test: int = 0
  seed: int = 0
  variables_map: str = ""  # netcdf: "name_in_file:CAM5_NAME,..."
  box_order: str = ""  # extremeweather: "yxyx" | "xxyy" | "" (read off the values)
  test_fraction: float = DEFAULT_TEST_FRACTION  # netcdf / extremeweather: last snapshots held out
  nonfinite: str = "refuse"  # file sources: "refuse" | "mask" a NaN or Inf (NONFINITE)
  require_all_criteria: bool = False  # netcdf: heuristic labels on every criterion only


@dataclasses.dataclass
class DetectionConfig(tfds.core.BuilderConfig):
  source: str = "synthetic"
  input: str = ""
  variables_map: str = ""
  box_order: str = ""
  test_fraction: float = DEFAULT_TEST_FRACTION
  height: int = 768
  width: int = 1152
  num_train: int = 0
  num_test: int = 0
  seed: int = 0
  max_boxes: int = DETECTION_MAX_BOXES
  nonfinite: str = "refuse"
  require_all_criteria: bool = False
  event_knobs: str = ""  # synthetic: "tc_rate=2,ar_intensity=1.2" ("" = the default climate)
