"""Property-based tests (hypothesis) of box conversions, IoU, NMS, AP and the readers' checks.

Every test is derandomized with no example database, so a run draws the same examples
everywhere (CI included) and a failure reproduces as it is. Files are written into a
fresh temporary directory per example: pytest's `tmp_path` is shared by every example
of one test.
"""

import os
import tempfile

import h5py
import netCDF4
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from climjax.data import archives, netcdf
from climjax.data import extremeweather as ew
from climjax.data.errors import DataError
from climjax.data.variables import CAM5_VARIABLES, CLASS_NAMES, CLASS_NAMES_WITH_FRONTS
from climjax.evaluation import detection as det

pytestmark = pytest.mark.reliability

# Deterministic and database-free; `deadline=None` because the first example of a test
# pays for imports and file creation.
FAST = settings(
  derandomize=True,
  database=None,
  deadline=None,
  max_examples=100,
  suppress_health_check=[HealthCheck.too_slow],
)
FILES = settings(FAST, max_examples=40)  # examples that write and read files

NUM_CLASSES = len(CLASS_NAMES)


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

# Integer-valued coordinates make ties and touching boxes common; the others test rounding.
COORD = st.one_of(
  st.integers(0, 24).map(float),
  st.floats(0.0, 24.0, allow_nan=False, allow_infinity=False),
)
SIZE = st.one_of(
  st.integers(0, 12).map(float),
  st.floats(0.0, 12.0, allow_nan=False, allow_infinity=False),
)
POSITIVE_SIZE = st.one_of(st.integers(1, 12).map(float), st.floats(0.25, 12.0))


@st.composite
def box(draw, size=SIZE) -> np.ndarray:
  """(ymin, xmin, ymax, xmax) with min <= max."""
  y, x = draw(COORD), draw(COORD)
  return np.array([y, x, y + draw(size), x + draw(size)], np.float64)


@st.composite
def boxes(draw, min_size=0, max_size=8, size=SIZE) -> np.ndarray:
  n = draw(st.integers(min_size, max_size))
  return np.array([draw(box(size)) for _ in range(n)], np.float64).reshape(n, 4)


def distinct_scores(draw, n: int) -> np.ndarray:
  """n distinct scores in (0, 1), in a drawn order."""
  order = draw(st.permutations(range(n)))
  return (np.asarray(order, np.float64) + 1.0) / (n + 1.0)


def _area(b: np.ndarray) -> np.ndarray:
  return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


# ---------------------------------------------------------------------------
# Pixels <-> degrees
# ---------------------------------------------------------------------------


@st.composite
def regular_grid(draw):
  """(lats, lons) of cell centres: latitudes ascending or descending within [-90, 90],
  longitudes starting at 0 or at -180 (or anywhere), spacing >= 0.1 degrees."""
  nlat, nlon = draw(st.integers(2, 40)), draw(st.integers(2, 40))
  dlat = draw(st.floats(0.1, 180.0 / nlat))
  lat0 = draw(st.floats(-90.0 + dlat / 2, 90.0 - dlat / 2 - dlat * (nlat - 1)))
  lats = lat0 + dlat * np.arange(nlat)
  if draw(st.booleans()):
    lats = lats[::-1].copy()
  dlon = draw(st.floats(0.1, 360.0 / nlon))
  lon0 = draw(st.sampled_from([0.0, -180.0]) | st.floats(-180.0, 0.0))
  lons = lon0 + dlon * np.arange(nlon)
  return lats, lons


def _degrees_to_pixel(deg, coord):
  """The inverse of `pixel_to_degrees` on a regular grid: coord[i] is pixel i + 0.5."""
  return (np.asarray(deg) - coord[0]) / (coord[1] - coord[0]) + 0.5


@FAST
@given(grid=regular_grid(), data=st.data())
def test_pixel_degree_round_trip_on_regular_grids(grid, data):
  lats, lons = grid
  h, w = len(lats), len(lons)
  y = np.array(data.draw(st.lists(st.floats(0.0, h), min_size=1, max_size=6)))
  x = np.array(data.draw(st.lists(st.floats(0.0, w), min_size=1, max_size=6)))
  n = min(len(y), len(x))
  y, x = y[:n], x[:n]
  lat, lon = det.pixel_to_degrees(y, x, lats, lons)
  # Cell centres: pixel i + 0.5 is coordinate i exactly.
  centre_lat, centre_lon = det.pixel_to_degrees(np.arange(h) + 0.5, np.arange(w) + 0.5, lats, lons)
  np.testing.assert_allclose(centre_lat, lats, atol=1e-9)
  np.testing.assert_allclose(centre_lon, lons, atol=1e-9)
  # Linear on a regular grid, extrapolated half a cell past the ends, and invertible.
  np.testing.assert_allclose(_degrees_to_pixel(lat, lats), y, atol=1e-7)
  np.testing.assert_allclose(_degrees_to_pixel(lon, lons), x, atol=1e-7)
  # Monotone in the direction of the grid.
  order = np.argsort(y, kind="stable")
  steps = np.diff(lat[order]) * np.sign(lats[1] - lats[0])
  assert np.all(steps >= -1e-9)


@FAST
@given(grid=regular_grid(), data=st.data())
def test_box_edges_in_degrees_are_ordered_and_on_the_globe(grid, data):
  lats, lons = grid
  h, w = len(lats), len(lons)
  n = data.draw(st.integers(1, 6))
  pixels = []
  for _ in range(n):
    y0, y1 = sorted(data.draw(st.lists(st.floats(0.0, h), min_size=2, max_size=2)))
    x0, x1 = sorted(data.draw(st.lists(st.floats(0.0, w), min_size=2, max_size=2)))
    pixels.append([y0, x0, y1, x1])
  pixels = np.array(pixels)
  lat_min, lon_min, lat_max, lon_max = det.box_edges_degrees(pixels, lats, lons)
  assert np.all(lat_min <= lat_max), (lats, pixels, lat_min, lat_max)
  assert np.all(lon_min <= lon_max), (lons, pixels, lon_min, lon_max)
  assert np.all((-90 <= lat_min) & (lat_max <= 90))
  low, high = (0.0, 360.0) if lons.min() >= 0 else (-180.0, 180.0)
  assert np.all((low <= lon_min) & (lon_max <= high))
  # Where nothing was clipped the edges invert back to the box.
  lat_a, lon_a = det.pixel_to_degrees(pixels[:, 0], pixels[:, 1], lats, lons)
  lat_b, lon_b = det.pixel_to_degrees(pixels[:, 2], pixels[:, 3], lats, lons)
  inside = (np.minimum(lat_a, lat_b) >= -90) & (np.maximum(lat_a, lat_b) <= 90)
  spans = np.abs(lat_max - lat_min)[inside]
  np.testing.assert_allclose(spans, np.abs(lat_b - lat_a)[inside], atol=1e-9)
  np.testing.assert_allclose(
    np.sort(np.stack([lat_min, lat_max]), axis=0)[:, inside],
    np.sort(np.stack([lat_a, lat_b]), axis=0)[:, inside],
    atol=1e-9,
  )


# ---------------------------------------------------------------------------
# IoU
# ---------------------------------------------------------------------------


@FAST
@given(a=boxes(1, 6), b=boxes(1, 6))
def test_iou_symmetric_and_in_unit_interval(a, b):
  iou = det.iou_matrix(a, b)
  assert iou.shape == (len(a), len(b))
  np.testing.assert_array_equal(iou, det.iou_matrix(b, a).T)
  assert np.all((iou >= 0.0) & (iou <= 1.0)), iou


@FAST
@given(a=boxes(1, 6, size=POSITIVE_SIZE))
def test_iou_of_a_box_with_itself_is_one(a):
  np.testing.assert_array_equal(np.diag(det.iou_matrix(a, a)), 1.0)


@FAST
@given(a=box(), b=box(), axis=st.sampled_from([0, 1]), gap=st.floats(0.0, 10.0))
def test_iou_of_disjoint_boxes_is_zero(a, b, axis, gap):
  # Move b past a along one axis (touching when gap is 0: zero-area intersection).
  shift = a[axis + 2] + gap - b[axis]
  b = b.copy()
  b[[axis, axis + 2]] += shift
  assert det.iou_matrix(a, b)[0, 0] == 0.0


@FAST
@given(
  a=boxes(1, 5),
  b=boxes(1, 5),
  dy=st.integers(-100, 100),
  dx=st.integers(-100, 100),
)
def test_iou_invariant_to_translating_both(a, b, dy, dx):
  shift = np.array([dy, dx, dy, dx], np.float64)
  np.testing.assert_allclose(
    det.iou_matrix(a + shift, b + shift), det.iou_matrix(a, b), rtol=1e-9, atol=1e-9
  )


@FAST
@given(a=boxes(1, 5), b=boxes(1, 5), dy=st.integers(-20, 20), dx=st.integers(-20, 20))
def test_iou_invariant_to_translation_exactly_on_integer_boxes(a, b, dy, dx):
  a, b = np.floor(a), np.floor(b)  # integer coordinates: every step is exact
  shift = np.array([dy, dx, dy, dx], np.float64)
  np.testing.assert_array_equal(det.iou_matrix(a + shift, b + shift), det.iou_matrix(a, b))


# ---------------------------------------------------------------------------
# NMS
# ---------------------------------------------------------------------------

THRESHOLD = st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0]) | st.floats(0.0, 1.0)


@st.composite
def scored_boxes(draw, min_size=1, max_size=10):
  b = draw(boxes(min_size, max_size))
  return b, distinct_scores(draw, len(b))


@FAST
@given(data=scored_boxes(), threshold=THRESHOLD)
def test_nms_keeps_a_non_overlapping_subset_led_by_the_top_box(data, threshold):
  b, s = data
  keep = det.nms(b, s, iou_threshold=threshold)
  assert keep.dtype == np.int64
  assert len(set(keep.tolist())) == len(keep)
  assert np.all((keep >= 0) & (keep < len(b)))
  assert keep[0] == np.argmax(s)  # the top-scoring box is always kept, first
  assert np.all(np.diff(s[keep]) < 0)  # by descending score
  iou = det.iou_matrix(b[keep], b[keep])
  off_diagonal = ~np.eye(len(keep), dtype=bool)
  assert not np.any(iou[off_diagonal] > threshold), (threshold, iou)
  # Greedy: every dropped box overlaps a kept box of higher score above the threshold.
  for i in sorted(set(range(len(b))) - set(keep.tolist())):
    higher = keep[s[keep] > s[i]]
    assert np.any(det.iou_matrix(b[i : i + 1], b[higher])[0] > threshold)


@FAST
@given(data=scored_boxes(), threshold=THRESHOLD, perm_seed=st.integers(0, 2**32 - 1))
def test_nms_does_not_depend_on_input_order(data, threshold, perm_seed):
  b, s = data
  perm = np.random.default_rng(perm_seed).permutation(len(b))
  keep = det.nms(b, s, iou_threshold=threshold)
  keep_permuted = perm[det.nms(b[perm], s[perm], iou_threshold=threshold)]
  np.testing.assert_array_equal(keep_permuted, keep)


@FAST
@given(
  data=scored_boxes(max_size=12),
  labels_seed=st.integers(0, 2**32 - 1),
  threshold=THRESHOLD,
  max_detections=st.none() | st.integers(0, 12),
)
def test_per_class_nms_within_each_class(data, labels_seed, threshold, max_detections):
  b, s = data
  labels = np.random.default_rng(labels_seed).integers(0, NUM_CLASSES, len(b))
  out = det.per_class_nms(
    {"boxes": b, "scores": s, "labels": labels},
    iou_threshold=threshold,
    max_detections=max_detections,
  )
  every = det.per_class_nms({"boxes": b, "scores": s, "labels": labels}, iou_threshold=threshold)
  if max_detections is not None:  # the cap keeps the best of the uncapped survivors
    for key in ("boxes", "scores", "labels"):
      np.testing.assert_array_equal(out[key], every[key][:max_detections])
  out = every
  assert np.all(np.diff(out["scores"]) < 0)
  # A subset of the input, each survivor with its own box and label.
  index = {float(v): i for i, v in enumerate(s)}
  kept = np.array([index[float(v)] for v in out["scores"]], np.int64)
  np.testing.assert_array_equal(out["boxes"], b[kept])
  np.testing.assert_array_equal(out["labels"], labels[kept])
  for c in np.unique(labels):
    mine = out["labels"] == c
    # Each class keeps exactly what NMS on that class alone keeps, its top box included.
    idx = np.flatnonzero(labels == c)
    assert set(kept[mine].tolist()) == set(idx[det.nms(b[idx], s[idx], iou_threshold=threshold)])
    assert idx[np.argmax(s[idx])] in kept[mine]
    iou = det.iou_matrix(out["boxes"][mine], out["boxes"][mine])
    assert not np.any(iou[~np.eye(int(mine.sum()), dtype=bool)] > threshold)


# ---------------------------------------------------------------------------
# Average precision
# ---------------------------------------------------------------------------

IOU_THRESHOLD = st.sampled_from([0.1, 0.5, 0.75, 1.0]) | st.floats(0.01, 1.0)


@st.composite
def detection_problem(draw, max_images=4):
  """(detections, ground truth) over a few images, every detection score distinct."""
  n_images = draw(st.integers(1, max_images))
  gts, raw = [], []
  for _ in range(n_images):
    g = draw(boxes(0, 4, size=POSITIVE_SIZE))
    gts.append({"boxes": g, "labels": np.array(draw(st.lists(
      st.integers(0, NUM_CLASSES - 1), min_size=len(g), max_size=len(g))), np.int64)})  # fmt: skip
    d = draw(boxes(0, 6))
    labels = draw(st.lists(st.integers(0, NUM_CLASSES - 1), min_size=len(d), max_size=len(d)))
    raw.append((d, np.array(labels, np.int64)))
  scores = distinct_scores(draw, sum(len(d) for d, _ in raw))
  dets, start = [], 0
  for d, labels in raw:
    dets.append({"boxes": d, "scores": scores[start : start + len(d)], "labels": labels})
    start += len(d)
  return dets, gts


def _ap(dets, gts, threshold):
  return det.average_precision(dets, gts, iou_threshold=threshold, num_classes=NUM_CLASSES)


def _same_ap(a: dict, b: dict) -> None:
  assert a.keys() == b.keys()
  for c in a:
    assert (np.isnan(a[c]) and np.isnan(b[c])) or a[c] == b[c], (c, a, b)


@FAST
@given(problem=detection_problem(), threshold=IOU_THRESHOLD)
def test_ap_in_unit_interval_and_nan_only_without_ground_truth(problem, threshold):
  dets, gts = problem
  ap = _ap(dets, gts, threshold)
  racah = det.average_precision_racah2017(
    dets, gts, iou_threshold=threshold, num_classes=NUM_CLASSES
  )
  assert sorted(ap) == list(range(NUM_CLASSES))
  for c in range(NUM_CLASSES):
    has_gt = any(np.any(g["labels"] == c) for g in gts)
    assert np.isnan(ap[c]) == (not has_gt), (c, ap)
    assert np.isnan(racah[c]) == (not has_gt), (c, racah)
    if has_gt:
      assert 0.0 <= ap[c] <= 1.0, ap
      assert 0.0 <= racah[c] <= 1.0, racah
      # Ignoring missed ground truth can only inflate AP.
      assert racah[c] >= ap[c] - 1e-12, (c, ap, racah)
  mean = det.mean_average_precision(ap)
  defined = [v for v in ap.values() if not np.isnan(v)]
  assert np.isnan(mean) if not defined else np.isclose(mean, np.mean(defined))


@FAST
@given(problem=detection_problem(), threshold=IOU_THRESHOLD, seed=st.integers(0, 2**32 - 1))
def test_ap_invariant_to_the_order_of_detections_and_of_images(problem, threshold, seed):
  dets, gts = problem
  rng = np.random.default_rng(seed)
  expected = _ap(dets, gts, threshold)
  shuffled = []
  for d in dets:
    p = rng.permutation(len(d["scores"]))
    shuffled.append({k: v[p] for k, v in d.items()})
  _same_ap(_ap(shuffled, gts, threshold), expected)
  images = rng.permutation(len(dets))
  _same_ap(_ap([dets[i] for i in images], [gts[i] for i in images], threshold), expected)


@FAST
@given(problem=detection_problem(), threshold=IOU_THRESHOLD, seed=st.integers(0, 2**32 - 1))
def test_perfect_detections_give_one(problem, threshold, seed):
  _, gts = problem
  # One ground-truth box per (image, class, box): identical boxes of one class in one
  # image would make one copy a duplicate of the other (a false positive, as in VOC).
  deduped = []
  for g in gts:
    seen = {}
    for b, lab in zip(g["boxes"], g["labels"], strict=True):
      seen.setdefault((int(lab), *b.tolist()), (b, lab))
    kept = list(seen.values())
    deduped.append({
      "boxes": np.array([b for b, _ in kept], np.float64).reshape(-1, 4),
      "labels": np.array([lab for _, lab in kept], np.int64),
    })  # fmt: skip
  rng = np.random.default_rng(seed)
  total = sum(len(g["labels"]) for g in deduped)
  scores = rng.permutation(total).astype(np.float64) / max(total, 1) + 0.01
  dets, start = [], 0
  for g in deduped:
    n = len(g["labels"])
    dets.append({"boxes": g["boxes"], "scores": scores[start : start + n], "labels": g["labels"]})
    start += n
  ap = _ap(dets, deduped, threshold)
  for c in range(NUM_CLASSES):
    if any(np.any(g["labels"] == c) for g in deduped):
      assert ap[c] == 1.0, (c, ap)
    else:
      assert np.isnan(ap[c])


@FAST
@given(
  problem=detection_problem(),
  threshold=IOU_THRESHOLD,
  label=st.integers(0, NUM_CLASSES - 1),
  image_seed=st.integers(0, 2**32 - 1),
  rank=st.floats(0.0, 1.0) | st.just(0.0),
  extra=box(),
)
def test_adding_a_false_positive_never_raises_ap(
  problem, threshold, label, image_seed, rank, extra
):
  dets, gts = problem
  before = _ap(dets, gts, threshold)
  # A box far from every ground-truth box (all lie in [0, 36]^2): a false positive at any
  # rank; rank 0 puts it below every other detection.
  extra = extra + 1000.0
  image = int(np.random.default_rng(image_seed).integers(len(dets)))
  scores = np.concatenate([d["scores"] for d in dets])
  score = rank * (1.0 - 1e-9)
  assume(score not in set(scores.tolist()))
  with_fp = [dict(d) for d in dets]
  d = with_fp[image]
  with_fp[image] = {
    "boxes": np.concatenate([d["boxes"], extra[None]]),
    "scores": np.append(d["scores"], score),
    "labels": np.append(d["labels"], label),
  }
  after = _ap(with_fp, gts, threshold)
  for c in range(NUM_CLASSES):
    if np.isnan(before[c]):
      assert np.isnan(after[c])
    else:
      assert after[c] <= before[c], (c, before, after)
      if score < scores.min(initial=1.0):  # the lowest rank: no effect at all
        assert after[c] == before[c], (c, before, after)


# ---------------------------------------------------------------------------
# ExtremeWeather HDF5: the two column orders and the reader's refusals
# ---------------------------------------------------------------------------

EW_CHANNELS = 16
NUM_EW_CLASSES = len(CLASS_NAMES_WITH_FRONTS)


@st.composite
def ew_dataset(draw):
  """(images NHWC, per-image (k, 4) yxyx integer boxes, per-image labels)."""
  n = draw(st.integers(1, 3))
  h, w = draw(st.integers(2, 10)), draw(st.integers(2, 14))
  images = (
    np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    .normal(size=(n, h, w, EW_CHANNELS))
    .astype(np.float32)
  )
  all_boxes, all_labels = [], []
  for _ in range(n):
    k = draw(st.integers(0, 4))
    rows = []
    for _ in range(k):
      y0, y1 = sorted(draw(st.lists(st.integers(0, h), min_size=2, max_size=2)))
      x0, x1 = sorted(draw(st.lists(st.integers(0, w), min_size=2, max_size=2)))
      rows.append([y0, x0, y1, x1])
    all_boxes.append(np.array(rows, np.float32).reshape(k, 4))
    all_labels.append(
      np.array(draw(st.lists(st.integers(0, NUM_EW_CLASSES - 1), min_size=k, max_size=k)))
    )
  return images, all_boxes, all_labels


def _stored_rows(boxes_list, labels_list, order: str, max_boxes: int = 6) -> np.ndarray:
  """Box rows as the released files store them, laid out here by hand (not by the writer)."""
  rows = np.full((len(boxes_list), max_boxes, 5), -1, np.int32)
  for i, (b, lab) in enumerate(zip(boxes_list, labels_list, strict=True)):
    ymin, xmin, ymax, xmax = b.T.astype(np.int32)
    columns = (ymin, xmin, ymax, xmax) if order == "yxyx" else (xmin, xmax, ymin, ymax)
    rows[i, : len(b)] = np.stack([*columns, lab], axis=-1).reshape(len(b), 5)
  return rows


def _write_raw(path, images_nhwc, rows, *, drop: str | None = None) -> None:
  """A file in the released layout (no attributes), optionally without one dataset."""
  with h5py.File(path, "w") as f:
    if drop != "images":
      f["images"] = np.moveaxis(images_nhwc, -1, 1)
    if drop != "boxes":
      f["boxes"] = rows


def _read_all(data: ew.ExtremeWeatherFile):
  examples = list(data)
  return (
    np.stack([e["image"] for e in examples]),
    [e["boxes"] for e in examples],
    [e["labels"] for e in examples],
  )


def _assert_same_boxes(got_boxes, got_labels, boxes_list, labels_list) -> None:
  assert len(got_boxes) == len(boxes_list)
  for gb, gl, b, lab in zip(got_boxes, got_labels, boxes_list, labels_list, strict=True):
    np.testing.assert_array_equal(gb, b)
    np.testing.assert_array_equal(gl, lab)
    assert gb.dtype == np.float32 and gl.dtype == np.int64


def _assert_names(error: pytest.ExceptionInfo, path, variable: str | None) -> None:
  message = str(error.value)
  assert "\n" not in message
  assert os.fspath(path) in message, message
  if variable is not None:
    assert variable in message, message
    assert error.value.variable in (variable, None)


@FILES
@given(dataset=ew_dataset())
def test_extremeweather_both_column_orders_give_the_same_boxes(dataset):
  images, boxes_list, labels_list = dataset
  with tempfile.TemporaryDirectory() as tmp:
    read = {}
    for order in ew.BOX_ORDERS:
      path = os.path.join(tmp, f"{order}.h5")
      _write_raw(path, images, _stored_rows(boxes_list, labels_list, order))
      with ew.ExtremeWeatherFile(path, box_order=order) as data:
        assert (len(data), data.height, data.width) == images.shape[:3]
        read[order] = _read_all(data)
      # Without an order the reader finds the right one or refuses to guess; never the wrong one.
      try:
        with ew.ExtremeWeatherFile(path) as data:
          assert data.box_order in (order, None)
          _assert_same_boxes(*_read_all(data)[1:], boxes_list, labels_list)
      except DataError as e:
        assert "ambiguous" in str(e) and e.variable == "boxes", e
      # Our writer records the order, so its files need none.
      written = os.path.join(tmp, f"written-{order}.h5")
      ew.write_extremeweather(written, images, boxes_list, labels_list, box_order=order)
      with ew.ExtremeWeatherFile(written) as data:
        assert data.box_order == order
        _assert_same_boxes(*_read_all(data)[1:], boxes_list, labels_list)
    for order in ew.BOX_ORDERS:
      got_images, got_boxes, got_labels = read[order]
      np.testing.assert_array_equal(got_images, images)
      _assert_same_boxes(got_boxes, got_labels, boxes_list, labels_list)


BAD_ROW = st.sampled_from(
  ["ymax>H", "xmax>W", "ymin<0", "xmin<0", "ymin>ymax", "xmin>xmax", "class high", "class low"]
)


@FILES
@given(
  dataset=ew_dataset(),
  order=st.sampled_from(ew.BOX_ORDERS),
  how=BAD_ROW,
  amount=st.integers(1, 50),
  where=st.integers(0, 2**16),
)
def test_extremeweather_refuses_boxes_outside_the_image_or_of_unknown_class(
  dataset, order, how, amount, where
):
  images, boxes_list, labels_list = dataset
  _, h, w, _ = images.shape
  image = where % len(images)
  labels = np.array([1])
  ymin, xmin, ymax, xmax = (0, 0, h, w)  # a valid box (the whole image) to break
  if how == "ymax>H":
    ymax = h + amount
  elif how == "xmax>W":
    xmax = w + amount
  elif how == "ymin<0":
    ymin = -amount
  elif how == "xmin<0":
    xmin = -amount
  elif how == "ymin>ymax":
    ymin, ymax = min(h, amount), 0
  elif how == "xmin>xmax":
    xmin, xmax = min(w, amount), 0
  elif how == "class high":
    labels = np.array([NUM_EW_CLASSES - 1 + amount])
  else:  # -1 included: a row is padding only when all five values are -1
    labels = np.array([-amount])
  b = np.array([[ymin, xmin, ymax, xmax]], np.float32)
  boxes_list = list(boxes_list)
  labels_list = list(labels_list)
  boxes_list[image] = np.concatenate([boxes_list[image], b])
  labels_list[image] = np.concatenate([labels_list[image], labels])
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "bad.h5")
    _write_raw(path, images, _stored_rows(boxes_list, labels_list, order))
    with pytest.raises(DataError) as e:
      ew.ExtremeWeatherFile(path, box_order=order)
    _assert_names(e, path, "boxes")
    # The writer refuses to write such a box in the first place.
    with pytest.raises(ValueError):
      ew.write_extremeweather(
        os.path.join(tmp, "w.h5"), images, boxes_list, labels_list, box_order=order
      )


@FILES
@given(
  dataset=ew_dataset(),
  fault=st.sampled_from(
    ["drop images", "drop boxes", "nan box", "inf box", "nan image", "inf image"]
  ),  # fmt: skip
  where=st.integers(0, 2**16),
)
def test_extremeweather_refuses_missing_datasets_and_non_finite_values(dataset, fault, where):
  images, boxes_list, labels_list = dataset
  rows = _stored_rows(boxes_list, labels_list, "yxyx")
  variable = "images" if "image" in fault else "boxes"
  drop = variable if fault.startswith("drop") else None
  bad = np.nan if "nan" in fault else np.inf
  if fault.endswith("box"):
    rows = rows.astype(np.float32)
    flat = rows.reshape(-1)
    flat[where % flat.size] = bad
  elif fault.endswith("image"):
    images = images.copy()
    flat = images.reshape(-1)
    flat[where % flat.size] = bad if where % 2 else -bad
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "bad.h5")
    _write_raw(path, images, rows, drop=drop)
    with pytest.raises(DataError) as e:
      with ew.ExtremeWeatherFile(path, box_order="yxyx") as data:
        _read_all(data)  # values are checked as they are read
    _assert_names(e, path, variable)


# ---------------------------------------------------------------------------
# netCDF: random small CAM5-style files through open_fields
# ---------------------------------------------------------------------------

FIELD_NAMES = sorted(CAM5_VARIABLES)
DAY0 = 1999 * 365.0  # 2000-01-01 in days since 0001-01-01 on the noleap calendar


@st.composite
def netcdf_dataset(draw):
  """(fields {name: (time, lat, lon)}, days, lats, lons) in the file's own order."""
  nt, ny, nx = draw(st.integers(2, 6)), draw(st.integers(3, 9)), draw(st.integers(4, 12))
  names = draw(st.lists(st.sampled_from(FIELD_NAMES), min_size=1, max_size=4, unique=True))
  dlat = draw(st.floats(1.0, 160.0 / ny))
  lats = draw(st.floats(-80.0, 80.0 - dlat * (ny - 1))) + dlat * np.arange(ny)
  if draw(st.booleans()):
    lats = lats[::-1].copy()
  dlon = 360.0 / nx if draw(st.booleans()) else draw(st.floats(1.0, 300.0 / nx))
  lons = draw(st.sampled_from([0.0, -180.0, 10.0])) + dlon * np.arange(nx)
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  # Values in each variable's plausible range, in the units the file states (the reader
  # converts stated units and refuses absurd values).
  fields = {
    name: rng.uniform(*archives.PLAUSIBLE[name], size=(nt, ny, nx)).astype(np.float32)
    for name in names
  }
  return fields, DAY0 + 0.25 * np.arange(nt), lats, lons


def _write_nc(path, fields, days, lats, lons) -> None:
  """A CAM5 history-style file written with netCDF4 directly (not the library's writer)."""
  with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
    nc.createDimension("time", None)
    nc.createDimension("lat", len(lats))
    nc.createDimension("lon", len(lons))
    time = nc.createVariable("time", "f8", ("time",))
    time.units, time.calendar = "days since 0001-01-01 00:00:00", "noleap"
    time[:] = days
    nc.createVariable("lat", "f8", ("lat",))[:] = lats
    nc.createVariable("lon", "f8", ("lon",))[:] = lons
    for name, values in fields.items():
      var = nc.createVariable(name, "f4", ("time", "lat", "lon"))
      var.units = archives.LIBRARY_UNITS[name]
      var[:] = values


def _expected(values, lats, lons):
  """A field in the library's conventions: latitude ascending, longitude 0-360 ascending."""
  if lats[0] > lats[-1]:
    values = values[:, ::-1]
  return values[:, :, np.argsort(np.mod(lons, 360.0), kind="stable")]


@FILES
@given(dataset=netcdf_dataset(), data=st.data())
def test_netcdf_random_valid_files_give_back_their_values(dataset, data):
  fields, days, lats, lons = dataset
  names = list(fields)
  wanted = data.draw(
    st.none() | st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True)
  )
  split = data.draw(st.integers(0, len(days) - 1))  # 0: one file, else a second from `split`
  with tempfile.TemporaryDirectory() as tmp:
    paths = [os.path.join(tmp, "a.nc")]
    if split:
      paths.append(os.path.join(tmp, "b.nc"))
      _write_nc(paths[0], {k: v[:split] for k, v in fields.items()}, days[:split], lats, lons)
      _write_nc(paths[1], {k: v[split:] for k, v in fields.items()}, days[split:], lats, lons)
    else:
      _write_nc(paths[0], fields, days, lats, lons)
    ds = netcdf.open_fields(paths if split else paths[0], wanted)
    assert sorted(ds.data_vars) == sorted(wanted or names)
    assert ds.sizes == {"time": len(days), "lat": len(lats), "lon": len(lons)}
    np.testing.assert_allclose(ds["lat"].values, np.sort(lats))
    np.testing.assert_allclose(ds["lon"].values, np.sort(np.mod(lons, 360.0)))
    for name in ds.data_vars:
      assert ds[name].dtype == np.float32
      np.testing.assert_array_equal(ds[name].values, _expected(fields[name], lats, lons))
      # A block read lazily is the same block of the whole.
      np.testing.assert_array_equal(ds[name][1:, 1:3, ::2].values, ds[name].values[1:, 1:3, ::2])


@FILES
@given(dataset=netcdf_dataset(), data=st.data())
def test_netcdf_missing_variable_is_a_data_error_naming_it(dataset, data):
  fields, days, lats, lons = dataset
  absent = [n for n in FIELD_NAMES if n not in fields]
  missing = data.draw(st.sampled_from(absent))
  wanted = [*data.draw(st.permutations(list(fields))), missing]
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "a.nc")
    _write_nc(path, fields, days, lats, lons)
    with pytest.raises(DataError) as e:
      netcdf.open_fields(path, wanted)
    _assert_names(e, path, missing)
    assert e.value.variable == missing


@FILES
@given(
  dataset=netcdf_dataset(),
  coordinate=st.sampled_from(["lat", "lon"]),
  bad=st.sampled_from([np.nan, np.inf, -np.inf]),
  where=st.integers(0, 2**16),
)
def test_netcdf_non_finite_coordinates_are_refused(dataset, coordinate, bad, where):
  fields, days, lats, lons = dataset
  coords = {"time": days.copy(), "lat": lats.copy(), "lon": lons.copy()}
  coords[coordinate][where % len(coords[coordinate])] = bad
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "a.nc")
    _write_nc(path, fields, coords["time"], coords["lat"], coords["lon"])
    with pytest.raises(DataError) as e:
      netcdf.open_fields(path)
    _assert_names(e, path, coordinate)


@FILES
@given(dataset=netcdf_dataset(), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_netcdf_non_finite_first_time_is_refused(dataset, bad):
  fields, days, lats, lons = dataset
  days = days.copy()
  days[0] = bad
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "a.nc")
    _write_nc(path, fields, days, lats, lons)
    with pytest.raises(DataError) as e:
      netcdf.open_fields(path)
    _assert_names(e, path, "time")


@FILES
@given(dataset=netcdf_dataset(), data=st.data())
def test_netcdf_all_nan_time_step_is_refused_partial_nan_is_missing(dataset, data):
  fields, days, lats, lons = dataset
  name = data.draw(st.sampled_from(sorted(fields)))
  step = data.draw(st.integers(0, len(days) - 1))
  with tempfile.TemporaryDirectory() as tmp:
    # A few NaNs are missing values (CAM5's _FillValue): read back as NaN where they were.
    holes = {k: v.copy() for k, v in fields.items()}
    flat = holes[name].reshape(-1)
    picks = data.draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=3))
    flat[picks] = np.nan
    assume(not np.isnan(holes[name]).all(axis=(1, 2)).any())
    path = os.path.join(tmp, "holes.nc")
    _write_nc(path, holes, days, lats, lons)
    ds = netcdf.open_fields(path)
    np.testing.assert_array_equal(ds[name].values, _expected(holes[name], lats, lons))

    # A time step with no value at all is refused: at open for the first, at read after.
    empty = {k: v.copy() for k, v in fields.items()}
    empty[name][step] = np.nan
    path = os.path.join(tmp, "empty.nc")
    _write_nc(path, empty, days, lats, lons)
    with pytest.raises(DataError, match="all NaN") as e:
      ds = netcdf.open_fields(path)
      assert step > 0, "the first step is read at open"
      ds[name].values  # noqa: B018 - reading is the check
    _assert_names(e, path, name)


@FILES
@given(dataset=netcdf_dataset(), data=st.data())
def test_netcdf_infinite_field_values_are_refused(dataset, data):
  fields, days, lats, lons = dataset
  name = data.draw(st.sampled_from(sorted(fields)))
  bad = {k: v.copy() for k, v in fields.items()}
  flat = bad[name].reshape(-1)
  flat[data.draw(st.integers(0, flat.size - 1))] = data.draw(st.sampled_from([np.inf, -np.inf]))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "inf.nc")
    _write_nc(path, bad, days, lats, lons)
    with pytest.raises(DataError) as e:
      netcdf.open_fields(path)[name].values  # noqa: B018
    _assert_names(e, path, name)


def test_strategies_cover_both_latitude_directions_and_column_orders():
  """The examples above reach the cases they claim to (a cheap guard on the strategies)."""
  seen = set()

  @settings(FAST, max_examples=40)
  @given(grid=regular_grid())
  def probe(grid):
    lats, lons = grid
    seen.add(("descending" if lats[0] > lats[-1] else "ascending", lons.min() < 0))

  probe()
  assert {d for d, _ in seen} == {"ascending", "descending"}
  assert {neg for _, neg in seen} == {True, False}
