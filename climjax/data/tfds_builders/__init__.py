"""tfds dataset builders (array_record) for the classifier patches and for detection.

Datasets are built once into `data.data_dir` and read back by random access with
`tfds.data_source`-style sources (no TensorFlow needed). One builder config per
(task, source, input, sizes, seed), so datasets of different sizes or inputs
never collide and a second run reuses the first's files. tfds writes a dataset
into an `incomplete.*` directory and renames it when every split is written,
so a build that fails (bad input, interrupted) leaves no dataset behind and
never touches one built before.

Two builders:

`ClimatePatches` (`climate_patches/<config>`): centred multi-variable patches
with a binary label, for the TC / AR / WF classifiers (Liu et al. 2016).
Examples: {"patch": float32 (h, w, C), "label": int64 0 (background) | 1 (event)},
shapes `PATCH_SHAPES`, channels `variables.TASK_CHANNELS[task]`.

`ExtremeWeather` (`extreme_weather/<config>`): whole global snapshots with
their boxes, for the detector (Racah et al. 2017). Examples:
  "image"   float32 (H, W, 16), channels `variables.EXTREMEWEATHER_CHANNELS`
            (NHWC, physical units, latitude ascending)
  "boxes"   float32 (max_boxes, 4): (ymin, xmin, ymax, xmax) in pixels, y on
            the latitude axis, maxima exclusive (pixel edges); padding rows 0
  "labels"  int32 (max_boxes,): class ids 0 TD, 1 TC, 2 ETC, 3 AR; padding 0
  "mask"    float32 (max_boxes,): 1 for a real box, 0 for padding
  "time"    bytes: the snapshot's date (ISO 8601) where the input has one,
            else "<file>[<index>]" (ExtremeWeather files hold no dates)
Examples keep time order (index i of a split is its i-th snapshot), so 3-D
models can take windows of consecutive indices. The grid is in
`builder.info.metadata` ("lat", "lon": cell centres in degrees, "channels").
Images are stored as raw float32 bytes (56.6 MB for 768 x 1152 x 16), not
as lists of floats; array_record still compresses each record (zstd, tfds's
setting), which is most of the cost of reading one back.

Sources (builder config `source`, with `input` a path or glob):

  synthetic       `synthetic.tc_patches`, `patches.ar_patches` /
                  `patches.wf_patches`; detection: `synthetic.generate_fields`
                  at `height` x `width`, the test split from seed + 10,000.
  netcdf          CAM5 / CF files read with `netcdf.open_fields` (names mapped
                  by `variables.ALIASES` and `variables_map`), labelled by the
                  TECA-style heuristics: detection boxes (TD, TC, ETC, AR) are
                  those of `heuristics.label_events`; TC patches are centred
                  on candidates of `heuristics.detect_tropical_cyclones` on
                  tracks kept by `heuristics.track_cyclones` (tracks need 2
                  days of fields), AR patches on
                  `heuristics.detect_atmospheric_rivers`, WF patches on
                  `heuristics.detect_fronts` (T850, else TREFHT).
  extremeweather  `climo_YYYY.h5` files (`extremeweather.ExtremeWeatherFile`):
                  patches are cut around the boxes of the task's class (TC 1,
                  AR 3, WF 4 where a file has fronts); detection takes the
                  images and boxes as they are.

For netCDF and ExtremeWeather input the snapshots are split by time: the first
`1 - test_fraction` of them train, the rest test, so a storm seen in training
is not seen again at the next time step in the test split. `num_train` and
`num_test` then cap the examples per split (0 = all): patches half positive,
half negative; snapshots, the first of the split. Positive
patches are centred on each event (an AR on its area-weighted centre); as many
negatives are centred at random in the task's latitude band
(`NEGATIVE_LAT_BANDS`), on snapshots of the same split drawn at random,
where the window overlaps no event of the task's class (for TCs: no heuristic
candidate at all, tracked or not). Windows wrap around in longitude and
reflect across the poles (`patches.cut_patch`); on a regional grid, windows
that leave it are skipped. Patches are defined on a grid spacing
(`PATCH_SPACING`: the 25 km CAM5 grid for TC and AR, 1 deg for fronts); input
finer than that is block-averaged by the nearest integer factor.

Normalisation statistics are computed from the *training* split only and saved
as `stats.json` beside the dataset. `prepare` also decodes small datasets once
into memory-mapped .npy files (`decoded/` beside the dataset): a batch is then
an array slice rather than a parse of 256 records, which is what keeps the
input pipeline well ahead of training.

Modules
-------
This package re-exports the names of all its modules, so
`from climjax.data import tfds_builders; tfds_builders.prepare(...)` reaches
everything:

* `configs`: `PatchesConfig`, `DetectionConfig` and the settings they share.
* `frames`: input snapshots of netCDF / ExtremeWeather files and their events.
* `patch_cutting`: positive and negative patches cut from those snapshots.
* `climate_patches`: the `ClimatePatches` builder, `patches_config`, `patches_builder`.
* `detection`: the `ExtremeWeather` builder, `detection_config`, `detection_builder`.
* `sources`: `prepare`, `DecodedSource`, `decode_split`, `compute_stats`.
"""

from __future__ import annotations

from climjax.data.tfds_builders.climate_patches import (
  ClimatePatches,
  patches_builder,
  patches_config,
)
from climjax.data.tfds_builders.configs import (
  DEFAULT_DATA_DIR,
  DEFAULT_TEST_FRACTION,
  DETECTION_MAX_BOXES,
  NEGATIVE_LAT_BANDS,
  PATCH_SHAPES,
  PATCH_SPACING,
  SOURCES,
  TASK_CLASS_IDS,
  DetectionConfig,
  PatchesConfig,
  chunk_seed,
  parse_variables_map,
)
from climjax.data.tfds_builders.detection import (
  DETECTION_KEYS,
  ExtremeWeather,
  detection_builder,
  detection_config,
)
from climjax.data.tfds_builders.detection import _pad_boxes as _pad_boxes
from climjax.data.tfds_builders.frames import EVENT_COLUMNS
from climjax.data.tfds_builders.sources import (
  DECODED_CACHE_MAX_BYTES,
  DecodedSource,
  compute_stats,
  decode_split,
  prepare,
)

# The public API; `_pad_boxes`, imported `as` itself above, is tested directly.
__all__ = [
  "DECODED_CACHE_MAX_BYTES",
  "DEFAULT_DATA_DIR",
  "DEFAULT_TEST_FRACTION",
  "DETECTION_KEYS",
  "DETECTION_MAX_BOXES",
  "EVENT_COLUMNS",
  "NEGATIVE_LAT_BANDS",
  "PATCH_SHAPES",
  "PATCH_SPACING",
  "SOURCES",
  "TASK_CLASS_IDS",
  "ClimatePatches",
  "DecodedSource",
  "DetectionConfig",
  "ExtremeWeather",
  "PatchesConfig",
  "chunk_seed",
  "compute_stats",
  "decode_split",
  "detection_builder",
  "detection_config",
  "parse_variables_map",
  "patches_builder",
  "patches_config",
  "prepare",
]
