"""Zonal-mean climatology of the CAM5 variables and the seasonal cycle.

`_zonal_mean` is the background of the TC patches (5-35 deg); `_global_zonal_mean`
adds the polar features of the global snapshots; `_season` gives the phase of the
seasonal and diurnal cycles at a date.
"""

from __future__ import annotations

import numpy as np


def _zonal_mean(name: str, lat: np.ndarray) -> np.ndarray:
  """Zonal-mean climatology of a variable at latitudes `lat` (deg), in its units."""
  a = np.abs(lat)
  hemi = np.where(lat >= 0, 1.0, -1.0)
  if name == "PSL":
    # Equatorial trough, subtropical highs near 30 deg, subpolar lows near 60 deg.
    return (
      101_200
      - 250 * np.exp(-((lat / 10) ** 2))
      + 700 * np.exp(-(((a - 32) / 10) ** 2))
      - 1_400 * np.exp(-(((a - 62) / 10) ** 2))
    )
  if name in ("UBOT", "U850"):
    # Easterly trades peaking near 15 deg, westerlies in mid-latitudes; the 850 hPa
    # westerlies are stronger because surface drag is absent.
    west = 7.0 if name == "UBOT" else 12.0
    return -6.0 * np.exp(-(((a - 14) / 9) ** 2)) + west * np.exp(-(((a - 47) / 12) ** 2))
  if name in ("VBOT", "V850"):
    # Equatorward component of the trades (Hadley cell's lower branch).
    amp = 2.5 if name == "VBOT" else 1.5
    return -hemi * amp * np.exp(-(((a - 14) / 10) ** 2))
  if name == "TMQ":
    return 6.0 + 54.0 * np.exp(-((lat / 27) ** 2))
  if name == "T200":
    # Nearly flat: cold tropical upper troposphere, warmer lower stratosphere poleward.
    return 219.0 - 1.5 * np.exp(-((lat / 25) ** 2)) + 2.0 * (a / 90) ** 2
  if name == "T500":
    return 268.0 - 10.0 * (a / 40) ** 2 * (a < 40) - (10.0 + 0.45 * (a - 40)) * (a >= 40)
  raise KeyError(f"no zonal-mean climatology for variable {name!r}")


def _global_zonal_mean(name: str, lat: np.ndarray) -> np.ndarray:
  """`_zonal_mean` extended with the polar features that patches at 5-35 deg never see."""
  a = np.abs(lat)
  base = _zonal_mean(name, lat)
  if name == "PSL":
    return base + 900.0 * np.exp(-(((a - 88) / 10) ** 2))  # polar highs
  if name in ("UBOT", "U850"):
    return base - 3.0 * np.exp(-(((a - 72) / 8) ** 2))  # polar easterlies
  if name == "T200":
    return base - 4.0 * np.exp(-(((a - 80) / 15) ** 2))
  return base


def _season(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(s, utc_hour): s = +1 at the northern summer peak (mid-July), -1 in mid-January."""
  days = (times - np.datetime64("1970-01-01T00:00")) / np.timedelta64(1, "h") / 24.0
  doy = days % 365.2425  # day of year to within a day, enough for the seasons
  s = np.cos(2 * np.pi * (doy - 196.0) / 365.2425)
  return s, (days % 1.0) * 24.0
