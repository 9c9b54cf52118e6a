"""Moist thermodynamics and the derived CAM5 variables of a global snapshot.

Saturated precipitable water (Clausius-Clapeyron), the precipitation rate of
Bretherton et al. (2004), saturation humidity (Bolton 1980), and `_derived`:
all 16 variables (TMQ, PRECT, QREFHT, PS, Z1000, Z200, ZBOT, TS, ...) from the
prognostic fields once the events are planted.
"""

from __future__ import annotations

import numpy as np

from climjax.data.synthetic.global_grid import _Grid

R_DRY = 287.04  # gas constant of dry air, J/(kg K)
GRAVITY = 9.80665  # m/s2
_RD_OVER_G = R_DRY / GRAVITY  # hypsometric scale, m/K


def tmq_saturation(trefht: np.ndarray) -> np.ndarray:
  """Precipitable water (kg/m2) of a saturated column over a surface at `trefht` (K).

  Clausius-Clapeyron scaling (6.8 %/K) through 72 kg/m2 at 300 K, which with a
  column relative humidity of 0.7 gives the observed ~50 kg/m2 of the deep tropics.
  """
  return 72.0 * np.exp(0.068 * (trefht - 300.0))


def precipitation_rate(column_rh: np.ndarray) -> np.ndarray:
  """Precipitation (m/s) from column relative humidity r = TMQ / saturated TMQ.

  Bretherton et al. (2004): P = exp(15.6 (r - 0.603)) mm/day, fitted to tropical
  oceans; ~10 mm/day at r = 0.75, ~200 mm/day in a saturated TC core.
  """
  return np.exp(15.6 * (column_rh - 0.603)) / (1000.0 * 86400.0)


def saturation_specific_humidity(t: np.ndarray, p: np.ndarray) -> np.ndarray:
  """Saturation specific humidity (kg/kg) at temperature t (K) and pressure p (Pa) (Bolton 1980)."""
  es = 611.2 * np.exp(17.67 * (t - 273.15) / (t - 29.65))
  return 0.622 * es / (p - 0.378 * es)


def _derived(grid: _Grid, b: dict[str, np.ndarray], tmq_anom: np.ndarray) -> dict[str, np.ndarray]:
  """All 16 CAM5 variables from the prognostic fields (events already planted)."""
  f32 = np.float32
  land = grid.land[None]
  elev = grid.elevation[None]
  trefht = b["TREFHT"]
  # The column's saturation follows the free troposphere, not the land surface's
  # diurnal heating, and deep convection caps tropical columns near 301.5 K
  # (saturated TMQ ~80 kg/m2); higher ground holds a shorter, drier column.
  t_column = np.minimum(trefht - b["DIURNAL"], 301.5)
  sat = tmq_saturation(t_column) * np.exp(-elev / 2_500.0)
  # Event moisture is not capped by the local surface temperature: rivers and
  # conveyor belts carry warm, deep moist layers over cooler surfaces. Only the
  # tropical ceiling (0.97 of saturation at 301.5 K) applies.
  tmq = np.minimum(b["RH"] * sat + tmq_anom, 0.97 * tmq_saturation(301.5))
  column_rh = np.minimum(tmq / sat, 0.97)
  # Rain-rate saturation: the Bretherton fit is for r <= ~0.9; cap it at ~170 mm/day.
  prect = precipitation_rate(np.minimum(column_rh, 0.93))
  psl = b["PSL"]
  ps = psl * np.exp(-elev / (_RD_OVER_G * (trefht + 3.25e-3 * elev)))
  qrefht = np.clip(0.3 + 0.65 * column_rh, 0.2, 0.97) * saturation_specific_humidity(trefht, ps)
  ts_ocean = np.where(b["ICE"] > 0.5, trefht + 0.5, b["SST"])
  ts = land * (trefht + 0.5 * b["DIURNAL"] + 1.0) + (1 - land) * ts_ocean
  z1000 = _RD_OVER_G * trefht * np.log(psl / 1e5)
  t_layer = 0.25 * trefht + 0.45 * b["T500"] + 0.3 * b["T200"]
  z200 = z1000 + _RD_OVER_G * t_layer * np.log(1000.0 / 200.0)
  # CAM5's lowest level sits at sigma ~ 0.9925: about 63 m above the surface.
  zbot = _RD_OVER_G * trefht * np.log(1 / 0.9925)
  out = {
    "PRECT": prect,
    "PS": ps,
    "PSL": psl,
    "QREFHT": qrefht,
    "T200": b["T200"],
    "T500": b["T500"],
    "TMQ": tmq,
    "TREFHT": trefht,
    "TS": ts,
    "U850": b["U850"],
    "UBOT": b["UBOT"],
    "V850": b["V850"],
    "VBOT": b["VBOT"],
    "Z1000": z1000,
    "Z200": z200,
    "ZBOT": zbot,
  }
  return {k: np.asarray(v, f32) for k, v in out.items()}
