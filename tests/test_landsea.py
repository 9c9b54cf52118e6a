"""Tests for the land-sea mask: known places, fractions, any grid."""

import numpy as np

from climjax.data import landsea


def test_known_points():
  lat = np.array([23.0, 0.0, -80.0, 48.8, 40.0, -30.0])
  lon = np.array([15.0, 200.0, 30.0, 2.35, 330.0, 150.0])  # Sahara, mid-Pacific, Antarctica,
  # Paris (lon 0-360 and -180-180 both work), mid-Atlantic, New South Wales
  expected = np.array([True, False, True, True, False, True])
  np.testing.assert_array_equal(landsea.is_land(lat, lon), expected)
  np.testing.assert_array_equal(landsea.is_land(lat, (lon + 180) % 360 - 180), expected)


def test_land_fraction_on_a_coarse_grid():
  lat = -90 + (np.arange(36) + 0.5) * 5.0
  lon = np.arange(72) * 5.0
  frac = landsea.land_fraction(lat, lon)
  assert frac.shape == (36, 72) and frac.dtype == np.float32
  assert frac.min() >= 0 and frac.max() <= 1
  # Coastal cells are fractions, not just 0 or 1.
  assert ((frac > 0.05) & (frac < 0.95)).mean() > 0.1
  # About 29 % of the Earth's surface is land (lakes and Antarctica included here).
  weights = np.cos(np.deg2rad(lat))[:, None] * np.ones_like(frac)
  assert 0.25 < np.average(frac, weights=weights) < 0.36
  sahara = frac[np.searchsorted(lat, 22.5), np.searchsorted(lon, 15.0)]
  pacific = frac[np.searchsorted(lat, 0.0), np.searchsorted(lon, 200.0)]
  assert sahara == 1.0 and pacific == 0.0


def test_land_fraction_any_grid_and_cached_copy():
  lat = np.linspace(30, 60, 7)  # a regional grid, any spacing
  lon = np.linspace(-20, 40, 13)
  a = landsea.land_fraction(lat, lon)
  a[:] = -1  # the cached result must not change
  b = landsea.land_fraction(lat, lon)
  assert b.min() >= 0 and b.shape == (7, 13)
  one = landsea.land_fraction(lat, lon, samples_per_cell=1)
  np.testing.assert_array_equal(one, landsea.is_land(lat[:, None], lon[None, :]).astype(np.float32))
