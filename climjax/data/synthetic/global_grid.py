"""The global grid of the snapshots (with land and an elevation proxy) and their time axis.

Cell centres with latitude ascending and longitude in [0, 360), as in CAM5;
snapshots are 6-hourly from `DEFAULT_START`.
"""

from __future__ import annotations

import functools

import numpy as np

from climjax.data.synthetic.constants import KM_PER_DEG

STEP_HOURS = 6  # CAM5 history output of the ExtremeWeather data: 4 snapshots a day
STEPS_PER_DAY = 24 // STEP_HOURS
DEFAULT_START = np.datetime64("1979-01-01T00:00")


def latlon_grid(nlat: int, nlon: int) -> tuple[np.ndarray, np.ndarray]:
  """Cell-centre coordinates of a regular global grid: lat ascending, lon in [0, 360).

  Latitudes are -90 + (i + 0.5) 180 / nlat (no points on the poles, where the
  zonal spacing vanishes); longitudes j 360 / nlon, as in CAM5.
  """
  lat = -90.0 + (np.arange(nlat) + 0.5) * 180.0 / nlat
  lon = np.arange(nlon) * 360.0 / nlon
  return lat, lon


class _Grid:
  """A global grid with the static fields the generator needs (land, elevation proxy)."""

  def __init__(self, nlat: int, nlon: int):
    from scipy import ndimage

    from climjax.data import landsea

    self.nlat, self.nlon = nlat, nlon
    self.lat, self.lon = latlon_grid(nlat, nlon)
    self.dlat, self.dlon = 180.0 / nlat, 360.0 / nlon
    self.dy_km = self.dlat * KM_PER_DEG
    self.land = landsea.land_fraction(self.lat, self.lon)
    # Continental interiors are higher and drier: a land fraction smoothed over ~5 deg.
    sigma = (5.0 / self.dlat, 5.0 / self.dlon)
    self.interior = ndimage.gaussian_filter(self.land, sigma, mode=("nearest", "wrap"))
    # Surface elevation proxy (m): the mask carries no orography, so ice sheets
    # (Antarctica, Greenland) stand at 2,500 m and other land at up to 600 m in
    # continental interiors. It sets PS, a lapse-rate cooling and shallower, drier columns.
    lat2, lon2 = self.lat[:, None], self.lon[None, :]
    ice_sheet = (lat2 < -62) | ((lat2 > 60) & (lat2 < 84) & (lon2 > 285) & (lon2 < 340))
    self.elevation = (self.land * np.where(ice_sheet, 2_500.0, 600.0 * self.interior)).astype(
      np.float32
    )
    self.cos_lat = np.cos(np.deg2rad(self.lat))

  def row(self, lat: np.ndarray) -> np.ndarray:
    """Fractional row index of latitude `lat` (cell centres at integers)."""
    return (np.asarray(lat) + 90.0) / self.dlat - 0.5

  def col(self, lon: np.ndarray) -> np.ndarray:
    """Fractional column index of longitude `lon` (any range), in [0, nlon)."""
    return (np.asarray(lon) % 360.0) / self.dlon

  def window(self, lat_c: float, lon_c: float, half_km: float):
    """Rows, columns (wrapped) and km offsets of the grid points near a centre.

    Returns (r0, r1, cols, north_km (nr, 1), east_km (nr, nc), lat (nr, 1)).
    """
    half_deg = half_km / KM_PER_DEG
    r0 = int(np.clip(np.floor(self.row(lat_c - half_deg)), 0, self.nlat - 1))
    r1 = int(np.clip(np.ceil(self.row(lat_c + half_deg)) + 1, r0 + 1, self.nlat))
    lat = self.lat[r0:r1, None]
    # Widest zonal extent over the window's rows (narrowest cos lat), at most the globe.
    cos_min = max(np.cos(np.deg2rad(min(abs(lat_c) + half_deg, 89.0))), 1e-3)
    half_cols = min(int(np.ceil(half_deg / cos_min / self.dlon)) + 1, (self.nlon - 1) // 2)
    c = int(round(self.col(lon_c)))
    cols = np.arange(c - half_cols, c + half_cols + 1) % self.nlon
    dlon = (self.lon[cols][None, :] - lon_c + 180.0) % 360.0 - 180.0
    north = (lat - lat_c) * KM_PER_DEG
    east = dlon * KM_PER_DEG * np.cos(np.deg2rad(lat))
    return r0, r1, cols, north.astype(np.float32), east.astype(np.float32), lat


@functools.lru_cache(maxsize=4)
def _grid(nlat: int, nlon: int) -> _Grid:
  return _Grid(nlat, nlon)
