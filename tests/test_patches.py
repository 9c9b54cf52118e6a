"""Tests for patch cutting and the AR / front patch generators."""

import numpy as np
import pytest

from climjax.data import patches, synthetic, variables


def _field(nlat=10, nlon=12):
  lat = np.arange(nlat)[:, None, None]
  lon = np.arange(nlon)[None, :, None]
  return (100 * lat + lon + np.zeros((nlat, nlon, 2))).astype(np.float32)


def test_cut_patch_centre_and_lon_wrap():
  f = _field()
  p = patches.cut_patch(f, (5, 0), (4, 6))
  assert p.shape == (4, 6, 2)
  assert p[2, 3, 0] == 500  # the centre pixel sits at (h // 2, w // 2)
  np.testing.assert_array_equal(p[0, :, 0] % 100, [9, 10, 11, 0, 1, 2])
  # Leading axes (time) are kept.
  assert patches.cut_patch(np.stack([f, f]), (5, 6), 3).shape == (2, 3, 3, 2)


def test_cut_patch_poles():
  f = _field()
  p = patches.cut_patch(f, (0, 3), (4, 2), poles="reflect")
  # Rows -2, -1 reflect to rows 1, 0, half-way around in longitude.
  np.testing.assert_array_equal(p[:, 0, 0], [100 + 8, 0 + 8, 0 + 2, 100 + 2])
  q = patches.cut_patch(f, (9, 3), (4, 2), poles="clamp")
  np.testing.assert_array_equal(q[:, 0, 0] // 100, [7, 8, 9, 9])
  with pytest.raises(ValueError):
    patches.cut_patch(f, (0, 0), 3, poles="wrap")


def test_tc_patches_from_fields():
  ds, events = synthetic.generate_fields(2, seed=0, nlat=192, nlon=288)
  x, y = patches.tc_patches_from_fields(ds, events, seed=0, size=16)
  num_tc = int((events.class_id == variables.CLASS_IDS["TC"]).sum())
  assert num_tc > 0 and y.sum() == num_tc and (y == 0).sum() == num_tc
  assert x.shape == (2 * num_tc, 16, 16, 8) and x.dtype == np.float32
  psl = x[..., variables.channel_index(variables.TC_CHANNELS, "PSL")]
  centre = psl[:, 6:10, 6:10].min(axis=(1, 2))
  edge = np.median(psl.reshape(len(x), -1), axis=1)
  # Positives are centred on a low.
  assert np.mean(edge[y == 1] - centre[y == 1]) > 2 * np.mean(edge[y == 0] - centre[y == 0])


@pytest.fixture(scope="module")
def ar():
  return patches.ar_patches(256, seed=4, return_kind=True)


def test_ar_patches_shapes_ranges_and_labels(ar):
  x, y, kind = ar
  assert x.shape == (256, 148, 224, 2) and x.dtype == np.float32 and y.dtype == np.int32
  assert y.sum() == 128 and set(kind[y == 1]) == {"AR"}
  assert set(kind[y == 0]) <= set(patches.AR_NEGATIVE_KINDS)
  tmq, land = x[..., 0], x[..., 1]
  assert tmq.min() >= 0 and tmq.max() <= 80
  assert land.min() >= 0 and land.max() <= 1 and 0.05 < land.mean() < 0.7
  # Rivers are moist (TECA: >= 20 kg/m2) and reach land: the land is moister than
  # its latitude's usual (the patch row's median) where rivers make landfall, less
  # so where the same rivers die out at sea, least with no river at all.
  assert np.percentile(tmq[y == 1].reshape(128, -1).max(axis=1), 5) >= 20
  excess = tmq - np.median(tmq, axis=2, keepdims=True)
  wet_land = np.array(
    [
      np.percentile(e[m > 0.5], 99) if (m > 0.5).sum() > 50 else np.nan
      for e, m in zip(excess, land, strict=True)
    ]
  )
  ar_median = np.nanmedian(wet_land[kind == "AR"])
  assert ar_median > np.nanmedian(wet_land[kind == "no_landfall"]) + 2
  assert ar_median > np.nanmedian(wet_land[kind == "background"]) + 3


def test_ar_patches_deterministic_and_sliceable(ar):
  x, y, _ = ar
  x2, y2 = patches.ar_patches(16, seed=4, start=100)
  np.testing.assert_array_equal(x2, x[100:116])
  np.testing.assert_array_equal(y2, y[100:116])


def test_wf_patches_shapes_ranges_and_labels():
  x, y, kind = patches.wf_patches(512, seed=2, return_kind=True)
  assert x.shape == (512, 27, 60, 3) and x.dtype == np.float32
  assert set(kind[y == 1]) == {"front"} and set(kind[y == 0]) <= set(patches.WF_NEGATIVE_KINDS)
  assert y.sum() == 256
  trefht, prect, psl = (
    x[..., variables.channel_index(variables.WF_CHANNELS, c)] for c in ("TREFHT", "PRECT", "PSL")
  )
  assert 220 < trefht.min() and trefht.max() < 320
  assert prect.min() >= 0 and prect.max() < 5e-6
  assert 93_000 < psl.min() and psl.max() < 106_000
  # Fronts are sharp: the strongest temperature gradient is larger in positives.
  grad = np.hypot(*np.gradient(trefht, axis=(1, 2))).reshape(512, -1).max(axis=1)
  assert np.median(grad[y == 1]) > 1.5 * np.median(grad[y == 0])
  for weak in ("weak_front", "diffuse_front", "frontless_cyclone"):
    assert np.median(grad[kind == "front"]) > 1.5 * np.median(grad[kind == weak])
  x2, _ = patches.wf_patches(300, seed=2, start=200)
  np.testing.assert_array_equal(x[200:500], x2)
