"""CAM5-like synthetic fields with planted extreme-weather events and their true boxes.

Real CAM5 output is large and its labels come from heuristics; synthetic fields
with events planted by construction give exact labels, any grid size and any
amount of data, so every model and every evaluation can be tested end to end.

Grid and units
--------------
Fields are float32 in the physical units of `variables.CAM5_VARIABLES`
(PSL in Pa, winds in m/s, TMQ in kg/m2, temperatures in K). The default pixel
spacing is that of the 25 km CAM5 run of the ExtremeWeather data set:
180/768 = 0.234 deg of latitude (26 km) by 360/1152 = 0.3125 deg of longitude
(35 km at the equator, 28 km at 35 deg). Latitude ascends with the row index.
Distances from a storm centre are computed on the local tangent plane in km, so
the same storm has the same physical size on any grid.

Background state
----------------
Each variable is a zonal-mean climatology as a function of latitude
(`_zonal_mean`): a subtropical PSL high near 30 deg and the equatorial trough,
easterly trades peaking near 15 deg with their equatorward component and
mid-latitude westerlies, precipitable water falling from ~60 kg/m2 at the
equator to ~20 kg/m2 at 35 deg, T500 cooling poleward, a nearly flat T200.
On top of it, per patch, a random offset and a random large-scale linear
gradient (synoptic variability) and spatially correlated noise: white noise
smoothed with a Gaussian filter in Fourier space (length scale 2-4 pixels).

Tropical cyclones (Holland 1980)
--------------------------------
Sea-level pressure p(r) = p_c + dp * exp(-(R/r)^B), with central deficit dp,
radius of maximum wind R and shape parameter B; the gradient wind is

    V(r) = sqrt(B dp / rho * (R/r)^B exp(-(R/r)^B) + (r f / 2)^2) - r |f| / 2,

rho = 1.15 kg/m3, f = 2 Omega sin(lat). The flow is cyclonic: counter-clockwise
in the northern hemisphere, clockwise in the southern. The lowest model level
(UBOT, VBOT) feels surface friction: 0.8 V with 20 deg inflow across the
isobars. At 850 hPa, above the boundary layer, the vortex is weaker than at the
gradient level (0.85 V, a radius of maximum wind 1.2 R and 5 deg inflow): the
warm core makes the cyclone weaken with height, so its 850 hPa peak is a broader,
lower maximum than the friction-free gradient wind. A translation (steering-flow)
vector adds the usual front-right asymmetry near the core. The warm core aloft is
a Gaussian of radius 150-300 km with a T200 anomaly of 0.3 K plus 0.5-1.0 K per
1000 Pa of pressure deficit and a T500 anomaly 0.5-0.7 times that; the moist
core is a TMQ anomaly of 10-25 kg/m2 with radius 150-350 km, modulated by two
logarithmic spiral rain bands; TMQ is capped at 78 kg/m2 (saturated columns).

TC parameters are drawn from ranges typical of a 25 km model: dp log-uniform in
800-5,500 Pa, R uniform in 25-120 km, B uniform in 1.0-2.0, and dp raised where
needed so the maximum lowest-level wind is at least 18 m/s (tropical-storm
strength is 17 m/s). Tropical depressions (weak lows) have dp 150-1,200 Pa, R
60-250 km, B 0.9-1.3, a maximum lowest-level wind of at most 15 m/s and a warm
core of at most 0.6 K: lows with cyclonic circulation and moisture, below TC
strength. The 3 m/s gap between the two keeps labels unambiguous.

Shear lines / weak fronts (`shear_line_anomalies`) are a PSL trough 150-600 Pa
deep and 80-200 km wide with a cyclonic along-line wind jump of 3-9 m/s each side
and a 4-12 kg/m2 moisture band: cyclonic vorticity without a closed circulation.

Supervised TC patches (`tc_patches`)
------------------------------------
Patches are drawn at random latitudes 5-35 deg in either hemisphere. Positives
hold one TC whose centre lies within 3 pixels of the patch centre. Negatives are
background only (20 %), a weak low (TD-like) within 3 pixels of the centre
(35 %), a TC at least 8 pixels (Chebyshev) from the centre, partly or wholly
outside the patch (30 %), or a shear line (15 %). Any example, positive or
negative, may also hold a distractor: a second storm (TC or TD) at least 10
pixels off centre (20 %) or a shear line (15 %). Mixing hemispheres flips the
sign of the circulation, so linear models cannot use the winds directly.
Examples are generated in blocks of `BLOCK_SIZE`, each from its own
`numpy.random.SeedSequence([seed, block])`, so example i of a seed is the same
whatever `start` and `num` select it, and different seeds give independent
streams: a train split from one seed and a test split from another never share
an example. On one core 20,000 patches take about 5 s.

Global snapshots (`generate_fields`, `generate_arrays`)
-------------------------------------------------------
Any global grid (`latlon_grid`: cell centres, lat ascending, lon 0-360); the
default 768 x 1152 is the 25 km CAM5 grid. All 16 variables of
`variables.EXTREMEWEATHER_CHANNELS`, 6-hourly from 1979-01-01 00:00.

Background. The season follows the date: the ITCZ sits at 5 + 6 s deg (s = +1
in mid-July), the SST is 271.35 + 31 cos^3(lat - 4 s) K, land temperatures have
a seasonal swing of 17 sin(|lat|)^1.2 K (larger in continental interiors), a
3 K subtropical excess, a 6.5 K/km lapse-rate cooling and a 4 K diurnal cycle
in local solar time; winter sea ice cools the air over polar oceans by up to
28 K. The land fraction is the real one (`landsea`); the mask carries no
orography, so an elevation proxy (2,500 m ice sheets, up to 600 m in
continental interiors) sets PS, the lapse rate and drier columns. PSL is the
zonal mean (equatorial trough, subtropical highs, subpolar lows, polar highs),
continental thermal highs/lows by season, three planetary waves per hemisphere
(wavenumbers 3-7, 300-800 Pa, moving east 4-12 deg/day) and synoptic noise
(150-700 Pa, largest in the storm tracks). Winds are the zonal means plus the
geostrophic wind of the PSL anomalies (tapered where f vanishes), weakened to
0.7 and turned 20 deg toward low pressure at the lowest level, plus noise.
Noise fields (correlation lengths 400-1,200 km) evolve as an AR(1) process with
a 1.5-day memory, so consecutive snapshots are coherent. Moisture is a column
relative humidity r (moist ITCZ and storm tracks, dry subtropics and deserts,
summer monsoons, moist poleward flow ahead of troughs): TMQ = r x saturated TMQ
(Clausius-Clapeyron, `tmq_saturation`), capped at 0.97 of saturation at 301.5 K
(~78 kg/m2). Derived: PRECT by Bretherton et al. (2004) from r
(`precipitation_rate`; ~3 mm/day global mean), QREFHT from r and the
saturation humidity (Bolton 1980), Z1000 and Z200 hypsometrically from PSL and
the layer temperatures, PS from PSL and the elevation, ZBOT for CAM5's lowest
level (sigma 0.9925, ~63 m), TS from the SST, sea ice or land (with its
diurnal cycle).

Events. Born at random (Poisson, rates in `_EVENT_RATES`: on average about 3
TC tracks, 1.5 TDs, 4 ETCs and 2.5 ARs alive at once), each with a track:
* TC tracks start at 8-20 deg over the ocean (the NH more likely in its
  summer), drift west at 3-7 m/s and poleward, recurve east at 20-30 deg, decay
  over land (e-folding 18 h) and end past 42 deg; the Holland vortex above with
  a deficit growing and decaying over a 4-10 day life. Each step is labelled TC
  where the lowest-level peak wind is >= 17 m/s, else TD (same track id).
* TD tracks: the weak lows above, 1-4 days, always TD.
* ETCs at 30-55 deg, moving east at 7-15 m/s and poleward, 3-6 days: a
  Gaussian low (1,500-5,000 Pa, radius 300-700 km) in gradient-wind balance,
  a cold and a warm front (`etc_anomalies`), labelled ETC once the deficit
  reaches `ETC_MIN_DEFICIT`; each front (from 0.75 days of age) gets its own
  row, class `variables.FRONT_CLASS_ID` ("WF").
* ARs from the subtropical ocean to a west coast at 30-55 deg
  (`_west_coasts`), 2,300-6,000 km long, Gaussian half-width 150-300 km,
  12-25 kg/m2 of excess TMQ with a 10-20 m/s low-level jet (`ar_anomalies`),
  labelled where their box holds TMQ >= `AR_MIN_TMQ` (TECA's 20 kg/m2).
Sizes are in km, so events look the same on every grid; on grids coarser than
an event's core the core is widened to about one cell, as a coarse model would
smear it. Boxes: TC/TD a square of half-side max(the radius where the
pressure deficit falls to 10 %, 1.2 x the moist-core radius) within 150-700 km;
ETC 1.5 radii; AR and fronts the extent of their axis plus 1.5-2 widths.

Each time step comes from its own random streams (noise innovations per step,
event births per day), so step i is the same whatever range is generated, and
the same seed gives the same events on every grid. 200 snapshots at 192 x 288
take about 10 s, a 768 x 1152 snapshot about 0.5 s (one core, numpy).

Writing files: `climjax.data.netcdf.write_cam5_netcdf(ds, path)` writes the
Dataset as a CAM5 history file; for the ExtremeWeather layout,
`x, boxes = generate_arrays(n, seed=...)` then
`extremeweather.write_extremeweather(path, x, [b[b[:, 4] >= 0, :4] for b in boxes],
[b[b[:, 4] >= 0, 4] for b in boxes])`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd
import xarray as xr

from climjax.data import variables

# Physical constants.
OMEGA = 7.292e-5  # Earth's rotation rate, 1/s
KM_PER_DEG = 111.195  # km per degree of great circle (Earth radius 6,371 km)
RHO_AIR = 1.15  # near-surface air density in the tropics, kg/m3

# Pixel spacing of the 25 km CAM5 grid (768 x 1152).
CAM5_DLAT = 180.0 / 768
CAM5_DLON = 360.0 / 1152

# Examples are generated in fixed-size blocks, one random stream per block, so a
# range of examples does not depend on how the caller slices the stream.
BLOCK_SIZE = 256

# Threshold winds (lowest model level, m/s): tropical-storm strength and the cap for
# tropical depressions, separated so labels are unambiguous by construction.
TC_MIN_WIND = 18.0
TD_MAX_WIND = 15.0

# Negative kinds of `tc_patches`, drawn with equal probability.
TC_NEGATIVE_KINDS: tuple[str, ...] = ("background", "weak_low", "off_centre_tc", "shear_line")
# Probabilities of each negative kind: the hard cases dominate.
TC_NEGATIVE_MIX: tuple[float, ...] = (0.2, 0.35, 0.3, 0.15)


def coriolis(lat_deg: np.ndarray) -> np.ndarray:
  """Coriolis parameter f = 2 Omega sin(lat), in 1/s."""
  return 2 * OMEGA * np.sin(np.deg2rad(lat_deg))


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


# Per-variable synoptic variability: (offset std, linear gradient std across the
# patch, correlated-noise std, noise length scale in pixels).
_TC_BACKGROUND_SPREAD: dict[str, tuple[float, float, float, float]] = {
  "PSL": (250.0, 250.0, 150.0, 4.0),
  "UBOT": (2.5, 2.0, 1.5, 3.0),
  "VBOT": (2.0, 2.0, 1.5, 3.0),
  "TMQ": (5.0, 5.0, 3.0, 3.0),
  "U850": (3.0, 2.5, 2.0, 3.0),
  "V850": (2.5, 2.5, 2.0, 3.0),
  "T200": (1.2, 0.8, 0.5, 4.0),
  "T500": (1.5, 1.0, 0.6, 4.0),
}


def _gaussian_interpolator(
  n: int, length_px: float, spacing: int, *, periodic: bool = True
) -> np.ndarray:
  """(n, ceil(n / spacing)) Gaussian kernel from a coarse lattice to n pixels.

  Rows have unit L2 norm, so a kernel applied to unit-variance white noise on the
  lattice gives unit variance at every pixel. Periodic kernels wrap around (for
  longitude); non-periodic ones extend the lattice 2 lengths past both ends so
  the edges see as many lattice points as the interior (for latitude).
  """
  if periodic:
    m = -(-n // spacing)
    centres = spacing * np.arange(m) + (spacing - 1) / 2
    d = np.abs(np.arange(n)[:, None] - centres[None, :])
    d = np.minimum(d, spacing * m - d)
  else:
    pad = int(np.ceil(2 * length_px / spacing))
    centres = spacing * np.arange(-pad, -(-n // spacing) + pad) + (spacing - 1) / 2
    d = np.abs(np.arange(n)[:, None] - centres[None, :])
  k = np.exp(-0.5 * (d / length_px) ** 2)
  return (k / np.sqrt((k**2).sum(axis=1, keepdims=True))).astype(np.float32)


def smooth_noise(
  rng: np.random.Generator, shape: tuple[int, ...], length_px: float | np.ndarray
) -> np.ndarray:
  """Unit-variance noise with Gaussian spatial correlation over the last two axes.

  A sum of Gaussian bumps of width `length_px` centred on a lattice of spacing
  about L/1.5 pixels with independent uniform amplitudes: stationary to within
  a few per cent, Gaussian by the central limit theorem (each pixel sums over a
  dozen or more lattice points), periodic in both axes (seamless in longitude),
  and a few times cheaper than smoothing white noise on the full grid because
  random numbers dominate the cost. The correlation of pixels d apart is about
  exp(-d^2 / (4 L^2)). `length_px` is a scalar or broadcasts against
  `shape[:-2]` (one length scale per channel, say).
  """
  ny, nx = shape[-2:]
  lengths = np.broadcast_to(np.asarray(length_px, np.float32), shape[:-2])
  out = np.empty(shape, np.float32)
  for length in np.unique(lengths):
    sel = lengths == length
    spacing = max(1, int(length / 1.5))
    ky = _gaussian_interpolator(ny, float(length), spacing)
    kx = _gaussian_interpolator(nx, float(length), spacing)
    count = int(sel.sum())
    # Uniform amplitudes scaled to unit variance: cheaper than normals.
    amp = rng.random((count, ky.shape[1], kx.shape[1]), dtype=np.float32)
    amp = (amp - 0.5) * np.float32(np.sqrt(12.0))
    # Two large matrix products (one per axis) instead of many tiny batched ones.
    w = amp.reshape(-1, kx.shape[1]) @ kx.T  # (count * my, nx)
    w = w.reshape(count, ky.shape[1], nx).transpose(0, 2, 1).reshape(-1, ky.shape[1]) @ ky.T
    out[sel] = w.reshape(count, nx, ny).transpose(0, 2, 1)
  return out


def holland_wind(
  r_km: np.ndarray, dp: np.ndarray, rmax_km: np.ndarray, b: np.ndarray, lat_deg: np.ndarray
) -> np.ndarray:
  """Holland (1980) gradient wind speed (m/s) at radius `r_km` from the centre."""
  r = np.maximum(r_km, 1.0) * 1e3
  x = (rmax_km * 1e3 / r) ** b
  rf2 = r * np.abs(coriolis(lat_deg)) / 2
  return np.sqrt(b / RHO_AIR * dp * x * np.exp(-x) + rf2**2) - rf2


def holland_max_wind(dp: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Peak Holland gradient wind (m/s), neglecting the Coriolis term: sqrt(B dp / (rho e))."""
  return np.sqrt(b * dp / (RHO_AIR * np.e))


def _vortex_winds(
  north_km: np.ndarray,
  east_km: np.ndarray,
  r_km: np.ndarray,
  speed: np.ndarray,
  hemi: np.ndarray,
  inflow_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
  """(u, v) of a cyclonic vortex of tangential speed `speed`, with inflow toward the centre.

  `hemi` is +1 in the northern hemisphere (counter-clockwise flow) and -1 in the
  southern (clockwise).
  """
  inv_r = 1.0 / np.maximum(r_km, 1e-3)
  cos_a, sin_a = np.cos(np.deg2rad(inflow_deg)), np.sin(np.deg2rad(inflow_deg))
  # Tangential unit vector rotated by +90 deg from the outward radius (NH).
  tan_e, tan_n = -north_km * inv_r * hemi, east_km * inv_r * hemi
  in_e, in_n = -east_km * inv_r, -north_km * inv_r
  return (
    speed * (cos_a * tan_e + sin_a * in_e),
    speed * (cos_a * tan_n + sin_a * in_n),
  )


def cyclone_anomalies(
  north_km: np.ndarray,
  east_km: np.ndarray,
  lat_deg: np.ndarray,
  params: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
  """Anomalies of the eight TC variables due to one warm-core cyclone per leading index.

  `north_km`, `east_km`: displacement of each grid point from the storm centre;
  `lat_deg`: latitude of each grid point (sets f and the hemisphere through
  `params["lat"]`, the centre latitude). `params` holds arrays broadcastable
  against the grid: dp (Pa), rmax (km), b, warm200 (K), warm500 (K), warm_radius
  (km), moist (kg/m2), moist_radius (km), band_phase (rad), motion_u, motion_v
  (m/s), lat (deg, centre).
  """
  p = params
  r = np.sqrt(north_km**2 + east_km**2)
  hemi = np.where(p["lat"] >= 0, 1.0, -1.0)
  x = (p["rmax"] / np.maximum(r, 1.0)) ** p["b"]
  psl = -p["dp"] * (1 - np.exp(-x))

  v_grad = holland_wind(r, p["dp"], p["rmax"], p["b"], lat_deg)
  v_max = holland_max_wind(p["dp"], p["b"])
  ubot, vbot = _vortex_winds(north_km, east_km, r, 0.8 * v_grad, hemi, 20.0)
  # Front-right asymmetry: the storm's motion adds to the vortex near the core.
  core = v_grad / np.maximum(v_max, 1e-3)
  ubot = ubot + 0.5 * p["motion_u"] * core
  vbot = vbot + 0.5 * p["motion_v"] * core
  v_850 = 0.85 * holland_wind(r, p["dp"], 1.2 * p["rmax"], p["b"], lat_deg)
  u850, v850 = _vortex_winds(north_km, east_km, r, v_850, hemi, 5.0)

  warm = np.exp(-0.5 * (r / p["warm_radius"]) ** 2)
  # Two logarithmic spiral rain bands (pitch ~ 20 deg) wound the cyclonic way.
  theta = np.arctan2(north_km, east_km)
  spiral = np.cos(
    2 * (hemi * theta + np.log(np.maximum(r, 1.0) / p["rmax"]) / np.tan(np.deg2rad(20.0)))
    + p["band_phase"]
  )
  moist = p["moist"] * np.exp(-0.5 * (r / p["moist_radius"]) ** 2) * (1 + 0.25 * spiral)
  return {
    "PSL": psl,
    "UBOT": ubot,
    "VBOT": vbot,
    "TMQ": moist,
    "U850": u850,
    "V850": v850,
    "T200": p["warm200"] * warm,
    "T500": p["warm500"] * warm,
  }


def sample_tc_params(rng: np.random.Generator, lat: np.ndarray) -> dict[str, np.ndarray]:
  """Parameters of tropical cyclones (one per entry of `lat`) from realistic ranges."""
  n = lat.shape[0]
  dp = np.exp(rng.uniform(np.log(800), np.log(5_500), n))
  b = rng.uniform(1.0, 2.0, n)
  # Guarantee tropical-storm strength at the lowest model level (0.8 x gradient wind).
  dp = np.maximum(dp, (TC_MIN_WIND / 0.8) ** 2 * RHO_AIR * np.e / b)
  warm200 = 0.3 + dp / 1_000 * rng.uniform(0.5, 1.0, n)
  return {
    "lat": lat,
    "dp": dp,
    "rmax": rng.uniform(25, 120, n),
    "b": b,
    "warm200": warm200,
    "warm500": warm200 * rng.uniform(0.5, 0.7, n),
    "warm_radius": rng.uniform(150, 300, n),
    "moist": rng.uniform(10, 25, n),
    "moist_radius": rng.uniform(150, 350, n),
    "band_phase": rng.uniform(0, 2 * np.pi, n),
    "motion_u": rng.normal(-3, 3, n),
    "motion_v": rng.normal(1, 2, n) * np.where(lat >= 0, 1, -1),
  }


def sample_td_params(rng: np.random.Generator, lat: np.ndarray) -> dict[str, np.ndarray]:
  """Parameters of tropical depressions: broad weak lows below tropical-storm strength."""
  n = lat.shape[0]
  b = rng.uniform(0.9, 1.3, n)
  dp = rng.uniform(150, 1_200, n)
  dp = np.minimum(dp, (TD_MAX_WIND / 0.8) ** 2 * RHO_AIR * np.e / b)
  return {
    "lat": lat,
    "dp": dp,
    "rmax": rng.uniform(60, 250, n),
    "b": b,
    "warm200": rng.uniform(0.0, 0.6, n),
    "warm500": rng.uniform(0.0, 0.4, n),
    "warm_radius": rng.uniform(200, 400, n),
    "moist": rng.uniform(5, 15, n),
    "moist_radius": rng.uniform(200, 450, n),
    "band_phase": rng.uniform(0, 2 * np.pi, n),
    "motion_u": rng.normal(-3, 3, n),
    "motion_v": np.zeros(n),
  }


def shear_line_anomalies(
  north_km: np.ndarray,
  east_km: np.ndarray,
  params: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
  """A shear line or weak front: PSL trough, cyclonic along-line shear, moisture band.

  It carries cyclonic vorticity like a cyclone but no closed circulation or
  warm core: the hard negative for vorticity-only detectors. `params`: angle
  (rad, of the line), offset (km, of the line from the origin), depth (Pa),
  width (km), shear (m/s, along-line wind on either side), moist (kg/m2), lat.
  """
  p = params
  hemi = np.where(p["lat"] >= 0, 1.0, -1.0)
  along_e, along_n = np.cos(p["angle"]), np.sin(p["angle"])
  # Signed distance across the line (to the left of the along-line direction).
  d = -east_km * along_n + north_km * along_e - p["offset"]
  profile = np.exp(-((d / p["width"]) ** 2))
  # Along-line wind decreasing to the left gives cyclonic (positive in NH) vorticity.
  along_wind = -hemi * p["shear"] * np.tanh(d / p["width"])
  u, v = along_wind * along_e, along_wind * along_n
  return {
    "PSL": -p["depth"] * profile,
    "UBOT": 0.8 * u,
    "VBOT": 0.8 * v,
    "TMQ": p["moist"] * profile,
    "U850": u,
    "V850": v,
    "T200": np.zeros_like(d),
    "T500": -0.5 * np.tanh(d / p["width"]) * hemi,
  }


def sample_shear_line_params(rng: np.random.Generator, lat: np.ndarray) -> dict[str, np.ndarray]:
  """Parameters of shear lines / weak fronts crossing near the origin."""
  n = lat.shape[0]
  return {
    "lat": lat,
    "angle": rng.uniform(0, np.pi, n),
    "offset": rng.uniform(-200, 200, n),
    "depth": rng.uniform(150, 600, n),
    "width": rng.uniform(80, 200, n),
    "shear": rng.uniform(3, 9, n),
    "moist": rng.uniform(4, 12, n),
  }


def _off_centre(rng: np.random.Generator, n: int, size: int, min_px: float) -> np.ndarray:
  """(n, 2) storm centres (pixels from the patch centre) at Chebyshev distance >= min_px.

  One coordinate is far (min_px to 0.75 size, either side), the other anywhere
  across the patch, so the storm may sit at a corner, an edge or outside.
  """
  far = rng.uniform(min_px, 0.75 * size, (n, 2)) * rng.choice([-1.0, 1.0], (n, 2))
  anywhere = rng.uniform(-size / 2, size / 2, (n, 2))
  far_axis = rng.integers(0, 2, n)[:, None] == np.arange(2)[None, :]
  return np.where(far_axis, far, anywhere)


def _tc_block(
  block: int, *, seed: int, size: int, positive_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
  """One block of `BLOCK_SIZE` TC patches (x, y), from the block's own random stream."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, block, 0x7C]))
  n = BLOCK_SIZE
  f32 = np.float32
  num_pos = int(round(positive_fraction * n))
  y = rng.permutation(np.arange(n) < num_pos).astype(np.int32)
  kind = np.where(y == 1, -1, rng.choice(len(TC_NEGATIVE_KINDS), n, p=TC_NEGATIVE_MIX))

  lat_c = rng.uniform(5, 35, n) * rng.choice([-1.0, 1.0], n)
  offsets = np.arange(size, dtype=f32) - (size - 1) / 2  # pixels from the patch centre
  lat = (lat_c[:, None, None] + offsets[None, :, None] * CAM5_DLAT).astype(f32)  # (n, size, 1)
  km_north = f32(CAM5_DLAT * KM_PER_DEG)
  km_east = (CAM5_DLON * KM_PER_DEG * np.cos(np.deg2rad(lat))).astype(f32)  # (n, size, 1)

  # Background: zonal mean + offset + large-scale gradient + correlated noise.
  names = variables.TC_CHANNELS
  spread = np.array([_TC_BACKGROUND_SPREAD[v] for v in names], f32)
  noise = smooth_noise(rng, (n, len(names), size, size), spread[:, 3])
  offset = (rng.standard_normal((n, len(names))) * spread[:, 0]).astype(f32)
  grad = (rng.standard_normal((n, len(names), 2)) * spread[:, 1, None] / size).astype(f32)
  out = np.empty((n, size, size, len(names)), f32)
  for c, name in enumerate(names):
    out[..., c] = (
      _zonal_mean(name, lat)
      + offset[:, c, None, None]
      + grad[:, c, 0, None, None] * offsets[None, :, None]
      + grad[:, c, 1, None, None] * offsets[None, None, :]
      + spread[c, 2] * noise[:, c]
    )

  def plant_vortices(idx: np.ndarray, centre: np.ndarray, is_tc: np.ndarray) -> None:
    """Add one TC (where is_tc) or TD to each example in idx, centred at `centre` pixels."""
    lat_storm = lat_c[idx] + centre[:, 0] * CAM5_DLAT
    tc, td = sample_tc_params(rng, lat_storm), sample_td_params(rng, lat_storm)
    params = {k: np.where(is_tc, tc[k], td[k])[:, None, None].astype(f32) for k in tc}
    vortex = cyclone_anomalies(
      (offsets[None, :, None] - centre[:, 0, None, None].astype(f32)) * km_north,
      (offsets[None, None, :] - centre[:, 1, None, None].astype(f32)) * km_east[idx],
      lat[idx],
      params,
    )
    for c, name in enumerate(names):
      out[idx, :, :, c] += vortex[name]

  def plant_shear_lines(idx: np.ndarray) -> None:
    line = sample_shear_line_params(rng, lat_c[idx])
    shear = shear_line_anomalies(
      offsets[None, :, None] * km_north,
      offsets[None, None, :] * km_east[idx],
      {k: v[:, None, None].astype(f32) for k, v in line.items()},
    )
    for c, name in enumerate(names):
      out[idx, :, :, c] += shear[name]

  # The defining event: a TC within 3 pixels of the centre (positives), a weak low
  # near the centre, a TC at least 8 pixels off centre, or a shear line.
  central = np.flatnonzero((y == 1) | (kind == TC_NEGATIVE_KINDS.index("weak_low")))
  plant_vortices(central, rng.uniform(-3, 3, (central.size, 2)), y[central] == 1)
  off = np.flatnonzero(kind == TC_NEGATIVE_KINDS.index("off_centre_tc"))
  plant_vortices(off, _off_centre(rng, off.size, size, 8), np.ones(off.size, bool))
  plant_shear_lines(np.flatnonzero(kind == TC_NEGATIVE_KINDS.index("shear_line")))
  # Distractors in any example, whatever its label: a second storm (TC or TD) far
  # from the centre, or a shear line, so no single feature decides the label.
  distract = rng.random(n)
  second = np.flatnonzero(distract < 0.2)
  plant_vortices(second, _off_centre(rng, second.size, size, 10), rng.random(second.size) < 0.5)
  is_line = kind == TC_NEGATIVE_KINDS.index("shear_line")
  plant_shear_lines(np.flatnonzero((distract >= 0.2) & (distract < 0.35) & ~is_line))

  tmq = variables.channel_index(names, "TMQ")
  np.clip(out[..., tmq], 1.0, 78.0, out=out[..., tmq])
  return out, y, kind_names(y, kind, TC_NEGATIVE_KINDS, "TC")


def kind_names(y: np.ndarray, kind: np.ndarray, negative_kinds: tuple[str, ...], positive: str):
  """Per example, the name of what was planted: `positive` or one of `negative_kinds`."""
  names = np.array(negative_kinds + (positive,))
  return names[np.where(y == 1, len(negative_kinds), kind)]


def stream_blocks(num: int, start: int, make_block) -> tuple[np.ndarray, ...]:
  """Examples `start` to `start + num` of a stream generated in blocks.

  `make_block(b)` returns a tuple of arrays whose first axis is the
  `BLOCK_SIZE` examples of block b (examples b * BLOCK_SIZE onwards). The output
  is preallocated, so peak memory is the output plus one block.
  """
  if num < 0 or start < 0:
    raise ValueError(f"num and start must be non-negative, got num={num}, start={start}")
  out = None
  first, last = start // BLOCK_SIZE, max(start + num - 1, start) // BLOCK_SIZE
  for block in range(first, last + 1):
    arrays = make_block(block)
    if out is None:
      out = tuple(np.empty((num, *a.shape[1:]), a.dtype) for a in arrays)
    lo = max(start, block * BLOCK_SIZE)
    hi = min(start + num, (block + 1) * BLOCK_SIZE)
    for o, a in zip(out, arrays, strict=True):
      o[lo - start : hi - start] = a[lo - block * BLOCK_SIZE : hi - block * BLOCK_SIZE]
  return out


def tc_patches(
  num: int,
  *,
  seed: int,
  size: int = 32,
  positive_fraction: float = 0.5,
  start: int = 0,
  return_kind: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Labelled patches for the TC classifier (Liu et al. 2016), in physical units.

  Returns x float32 (num, size, size, 8) with channels `variables.TC_CHANNELS`
  (PSL Pa, UBOT, VBOT m/s, TMQ kg/m2, U850, V850 m/s, T200, T500 K), latitude
  ascending along axis 1, and y int32 (num,): 1 where a tropical cyclone is
  centred in the patch (within 3 pixels), 0 otherwise. With `return_kind`, also
  the name of what each example holds ("TC" or one of `TC_NEGATIVE_KINDS`),
  for accuracy per kind of hard negative. Examples `start` to `start + num` of
  the stream for `seed`: the same example index always gives the same patch.
  Within each block of `BLOCK_SIZE` examples exactly
  round(positive_fraction * BLOCK_SIZE) are positive.
  """
  if not 0.0 <= positive_fraction <= 1.0:
    raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
  make = functools.partial(_tc_block, seed=seed, size=size, positive_fraction=positive_fraction)
  x, y, kind = stream_blocks(num, start, make)
  return (x, y, kind) if return_kind else (x, y)


# ----------------------------------------------------------------------------
# Global CAM5-like snapshots with planted, moving events.
# ----------------------------------------------------------------------------

STEP_HOURS = 6  # CAM5 history output of the ExtremeWeather data: 4 snapshots a day
STEPS_PER_DAY = 24 // STEP_HOURS
DEFAULT_START = np.datetime64("1979-01-01T00:00")
# Held-out global fields come from seed + this: they never share a field or an event with training.
TEST_SEED_OFFSET = 10_000

R_DRY = 287.04  # gas constant of dry air, J/(kg K)
GRAVITY = 9.80665  # m/s2
_RD_OVER_G = R_DRY / GRAVITY  # hypsometric scale, m/K

# Mean number of live events of each kind at any time, and their lifetimes (days).
# "TC" tracks are born weak and classed TD or TC at each time by their wind.
_EVENT_RATES: dict[str, tuple[float, tuple[float, float]]] = {
  "TC": (3.0, (4.0, 10.0)),
  "TD": (1.5, (1.0, 4.0)),
  "ETC": (4.0, (3.0, 6.0)),
  "AR": (2.5, (1.5, 4.0)),
}
_MAX_LIFE_STEPS = int(10 * STEPS_PER_DAY)
# Labelling thresholds of the global generator: an ETC is labelled from this
# pressure deficit (Pa), an AR where its box holds TMQ of at least this (kg/m2).
ETC_MIN_DEFICIT = 1_000.0
AR_MIN_TMQ = 20.0

# Correlation length (km) of each synoptic noise field of the background; the
# amplitudes, which vary with latitude, are set in `_background`.
_GLOBAL_NOISE_KM: dict[str, float] = {
  "psl": 900.0,
  "t": 900.0,
  "rh": 500.0,
  "u": 400.0,
  "v": 400.0,
  "t500": 1_000.0,
  "t200": 1_200.0,
}
_NOISE_MEMORY_DAYS = 1.5  # e-folding time of the AR(1) evolution of the noise


def latlon_grid(nlat: int, nlon: int) -> tuple[np.ndarray, np.ndarray]:
  """Cell-centre coordinates of a regular global grid: lat ascending, lon in [0, 360).

  Latitudes are -90 + (i + 0.5) 180 / nlat (no points on the poles, where the
  zonal spacing vanishes); longitudes j 360 / nlon, as in CAM5.
  """
  lat = -90.0 + (np.arange(nlat) + 0.5) * 180.0 / nlat
  lon = np.arange(nlon) * 360.0 / nlon
  return lat, lon


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


class _NoiseBank:
  """Spatially correlated noise fields that evolve in time as an AR(1) process.

  Each field is a Gaussian-bump sum on a coarse lattice (see `smooth_noise`);
  the lattice amplitudes follow a(t) = rho a(t-1) + sqrt(1 - rho^2) e(t) with
  e(t) drawn from a stream of its own per time step, so time step t is the same
  whatever range of steps is generated.
  """

  def __init__(self, seed: int, grid: _Grid):
    self.seed, self.grid = seed, grid
    self.rho = float(np.exp(-STEP_HOURS / (24.0 * _NOISE_MEMORY_DAYS)))
    self.kernels = {}
    for name, length_km in _GLOBAL_NOISE_KM.items():
      length_px = max(length_km / grid.dy_km, 1.0)
      spacing = max(1, int(length_px / 1.5))
      ky = _gaussian_interpolator(grid.nlat, length_px, spacing, periodic=False)
      kx = _gaussian_interpolator(grid.nlon, length_px, spacing)
      self.kernels[name] = (ky, kx)
    self._state: np.ndarray | None = None
    self._step = -1

  def _innovation(self, step: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x401E, step]))
    return {
      name: rng.standard_normal((ky.shape[1], kx.shape[1]), dtype=np.float32)
      for name, (ky, kx) in self.kernels.items()
    }

  def amplitudes(self, step: int) -> dict[str, np.ndarray]:
    """Lattice amplitudes at absolute time step `step` (sequential calls are O(1))."""
    if self._state is None or step < self._step:
      self._state, self._step = self._innovation(0), 0
    while self._step < step:
      self._step += 1
      e = self._innovation(self._step)
      c = np.float32(np.sqrt(1 - self.rho**2))
      self._state = {k: self.rho * self._state[k] + c * e[k] for k in self._state}
    return self._state

  def fields(self, steps: range) -> dict[str, np.ndarray]:
    """Noise fields (len(steps), nlat, nlon) of unit variance, per name."""
    amps = [self.amplitudes(s) for s in steps]
    out = {}
    for name, (ky, kx) in self.kernels.items():
      a = np.stack([amp[name] for amp in amps])  # (t, my, mx)
      w = a.reshape(-1, kx.shape[1]) @ kx.T  # (t my, nlon)
      w = w.reshape(len(amps), ky.shape[1], -1)
      out[name] = np.einsum("im,tmj->tij", ky, w, optimize=True).astype(np.float32)
    return out


def _planetary_waves(seed: int) -> list[tuple[float, int, float, float, float, float]]:
  """Travelling mid-latitude waves: (hemisphere, wavenumber, PSL amplitude Pa,
  speed deg/day eastward, phase rad, centre latitude)."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0x3A7E]))
  waves = []
  for hemi in (1.0, -1.0):
    for _ in range(3):
      waves.append(
        (
          hemi,
          int(rng.integers(3, 8)),
          float(rng.uniform(300, 800)),
          float(rng.uniform(4, 12)),
          float(rng.uniform(0, 2 * np.pi)),
          float(rng.uniform(45, 55)),
        )
      )
  return waves


def _background(
  grid: _Grid, noise: _NoiseBank, waves: list, steps: range, times: np.ndarray
) -> dict[str, np.ndarray]:
  """Prognostic background fields (t, nlat, nlon) before any event is planted.

  Returns PSL, UBOT, VBOT, U850, V850, T200, T500, TREFHT (physical units), RH
  (column relative humidity TMQ / saturated TMQ, dimensionless), and helpers for
  the derived fields: SST (t, nlat, 1), ICE (t, nlat, 1, sea-ice cooling in K),
  DIURNAL (t, nlat, nlon, the land diurnal temperature cycle in K).
  """
  f32 = np.float32
  lat = grid.lat[None, :, None]
  a = np.abs(lat)
  hemi = np.where(lat >= 0, 1.0, -1.0)
  land, interior = grid.land[None], grid.interior[None]
  s, utc_hour = _season(times)
  s = s[:, None, None]
  local_summer = s * hemi  # +1 in the local summer, -1 in the local winter
  itcz = 5.0 + 6.0 * s
  z = noise.fields(steps)

  # Travelling planetary waves in PSL; T500 is warm under ridges.
  days = np.array([st / STEPS_PER_DAY for st in steps])[:, None]
  lon_rad = np.deg2rad(grid.lon)[None, :]
  wave = np.zeros((len(steps), grid.nlat, grid.nlon), f32)
  for w_hemi, k, amp, speed, phase, centre in waves:
    env = (amp * np.exp(-(((grid.lat * w_hemi - centre) / 12.0) ** 2))).astype(f32)
    zonal = np.cos(k * (lon_rad - np.deg2rad(speed) * days) + phase).astype(f32)
    wave += env[None, :, None] * zonal[:, None, :]

  storm_track = np.exp(-(((a - 50) / 18) ** 2))
  psl_anom = wave + (150.0 + 550.0 * storm_track).astype(f32) * z["psl"]
  psl = (
    _global_zonal_mean("PSL", lat)
    - 700.0 * local_summer * interior * np.exp(-(((a - 40) / 20) ** 2))  # thermal lows/highs
    + psl_anom
  )

  # Geostrophic wind of the PSL anomaly, tapered where f vanishes and near the poles
  # (where the zonal spacing of the grid, and with it the gradient noise, blows up).
  dy = grid.dy_km * 1e3
  dx = (grid.dlon * KM_PER_DEG * 1e3 * np.maximum(grid.cos_lat, 0.05))[None, :, None]
  dpdy = np.gradient(psl_anom, dy, axis=1)
  dpdx = (np.roll(psl_anom, -1, axis=2) - np.roll(psl_anom, 1, axis=2)) / (2 * dx)
  f = coriolis(np.where(a < 10, 10.0 * hemi, lat))
  taper = (1 - np.exp(-((lat / 15) ** 2))) * np.clip(grid.cos_lat[None, :, None] / 0.34, 0, 1)
  ug = (-taper / (RHO_AIR * f) * dpdy).astype(f32)
  vg = (taper / (RHO_AIR * f) * dpdx).astype(f32)
  # Surface friction: weaker, and turned toward low pressure (left in the NH).
  cos_f, sin_f = np.cos(np.deg2rad(20.0)), np.sin(np.deg2rad(20.0)) * hemi
  ubot = _global_zonal_mean("UBOT", lat) + 0.7 * (ug * cos_f - vg * sin_f) + 1.5 * z["u"]
  vbot = _global_zonal_mean("VBOT", lat) + 0.7 * (ug * sin_f + vg * cos_f) + 1.5 * z["v"]
  u850 = _global_zonal_mean("U850", lat) + ug + 1.2 * z["u"]
  v850 = _global_zonal_mean("V850", lat) + vg + 1.2 * z["v"]

  # Surface temperature: ocean from the SST, land with a seasonal cycle growing
  # with latitude and continentality, a lapse-rate cooling and a diurnal cycle.
  sst = 271.35 + 31.0 * np.maximum(np.cos(np.deg2rad(lat - 4.0 * s)), 0) ** 3
  ice = 28.0 * np.clip((a - 60) / 25, 0, 1) * np.maximum(-local_summer, 0) ** 0.7
  t_ocean = sst - 1.0 - ice
  amp = 17.0 * np.sin(np.deg2rad(a)) ** 1.2 * (1 + 0.6 * interior)
  t_land = (
    271.35
    + 31.0 * np.cos(np.deg2rad(lat)) ** 3
    - 1.0
    + 3.0 * np.exp(-(((a - 25) / 10) ** 2))
    + amp * local_summer
    - 6.5e-3 * grid.elevation[None]
  )
  local_hour = (utc_hour[:, None, None] + grid.lon[None, None, :] / 15.0) % 24.0
  diurnal = (4.0 * land * (1 - a / 90) * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)).astype(f32)
  t_std = (0.8 + 2.5 * a / 90 + land).astype(f32)
  trefht = land * t_land + (1 - land) * t_ocean + diurnal + t_std * z["t"] + 0.002 * wave

  t500 = (
    _global_zonal_mean("T500", lat)
    + 3.5 * np.sin(np.deg2rad(a)) * local_summer
    + 0.004 * wave
    + (0.6 + 1.2 * a / 90).astype(f32) * z["t500"]
  )
  t200 = _global_zonal_mean("T200", lat) - 0.0012 * wave + 0.8 * z["t200"]

  # Column relative humidity: moist ITCZ and storm tracks, dry subtropics and
  # deserts, summer monsoons, moisture carried poleward ahead of troughs.
  desert = np.exp(-(((a - 25) / 9) ** 2)) * interior
  rh = (
    0.42
    + 0.33 * np.exp(-(((lat - itcz) / 9) ** 2))
    + 0.08 * np.exp(-((lat / 25) ** 2))
    + 0.15 * np.exp(-(((a - 50) / 15) ** 2))
    - 0.12 * land
    - 0.3 * land * desert
    + 0.15 * land * np.maximum(local_summer, 0) * np.exp(-(((a - 20) / 10) ** 2))
    + 0.005 * hemi * vg
    + 0.06 * z["rh"]
  )
  return {
    "PSL": psl.astype(f32),
    "UBOT": ubot.astype(f32),
    "VBOT": vbot.astype(f32),
    "U850": u850.astype(f32),
    "V850": v850.astype(f32),
    "T200": t200.astype(f32),
    "T500": t500.astype(f32),
    "TREFHT": trefht.astype(f32),
    "RH": np.clip(rh, 0.05, 0.95).astype(f32),
    "SST": sst.astype(f32),
    "ICE": ice.astype(f32),
    "DIURNAL": diurnal,
  }


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


@functools.lru_cache(maxsize=1)
def _reference_land() -> np.ndarray:
  """Land fraction on a 1 deg grid: events are placed with it, so the same seed
  gives the same events on every grid."""
  from climjax.data import landsea

  lat, lon = latlon_grid(180, 360)
  return landsea.land_fraction(lat, lon)


def _land_at(lat: float, lon: float) -> float:
  land = _reference_land()
  i = int(np.clip((lat + 90.0) // 1.0, 0, 179))
  return float(land[i, int((lon % 360.0) // 1.0) % 360])


@functools.lru_cache(maxsize=1)
def _west_coasts() -> np.ndarray:
  """(n, 2) lat/lon of west-coast land cells at 30-55 deg: where ARs make landfall."""
  land = _reference_land()
  lat, lon = latlon_grid(180, 360)
  upwind = np.mean([np.roll(land, k, axis=1) for k in range(1, 9)], axis=0)  # 8 deg to the west
  coast = (land >= 0.5) & (np.roll(land, 1, axis=1) < 0.5) & (upwind < 0.15)
  coast &= (np.abs(lat) >= 30)[:, None] & (np.abs(lat) <= 55)[:, None]
  i, j = np.nonzero(coast)
  return np.stack([lat[i], lon[j]], axis=1)


@dataclasses.dataclass
class _Track:
  """One event's life: centre (or landfall point) and strength at each of its steps."""

  kind: str  # "TC" (classed TD or TC at each step by its wind), "TD", "ETC" or "AR"
  track_id: int
  birth: int  # absolute time step of the first position
  lat: np.ndarray
  lon: np.ndarray
  strength: np.ndarray  # amplitude multiplier in [0, 1]
  p: dict[str, float]

  def alive(self, step: int) -> bool:
    return self.birth <= step < self.birth + len(self.lat)


def _move(lat: float, lon: float, u: float, v: float) -> tuple[float, float]:
  """Position after one time step at velocity (u, v) m/s."""
  dist = STEP_HOURS * 3.6  # km per (m/s) per step
  lat2 = float(np.clip(lat + v * dist / KM_PER_DEG, -85, 85))
  lon2 = (lon + u * dist / (KM_PER_DEG * np.cos(np.deg2rad(lat2)))) % 360.0
  return lat2, lon2


def _life_profile(n: int, power: float) -> np.ndarray:
  """Growth and decay over a life of n steps: sin(pi x)^power, never exactly zero."""
  x = (np.arange(n) + 0.5) / n
  return np.sin(np.pi * x) ** power


def _sample_cyclone_track(rng, kind: str, birth: int, life: int, season: float) -> _Track:
  """A TC (or TD) track: westward drift, poleward turn and recurvature, decay over land."""
  hemi = 1.0 if rng.random() < 0.5 + 0.4 * season else -1.0
  for _ in range(50):
    lat, lon = hemi * rng.uniform(8, 20), rng.uniform(0, 360)
    if _land_at(lat, lon) < 0.05:
      break
  params = (sample_tc_params if kind == "TC" else sample_td_params)(rng, np.array([lat]))
  p = {k: float(v[0]) for k, v in params.items()}
  p["dp_peak"] = p.pop("dp")
  lat_recurve, u0, u1 = rng.uniform(20, 30), rng.uniform(-7, -3), rng.uniform(4, 10)
  v0 = rng.uniform(1.0, 2.5) if kind == "TC" else rng.uniform(0, 1.5)
  lats, lons, land_hours = [], [], []
  hours = 0.0
  for _ in range(life):
    lats.append(lat)
    lons.append(lon)
    hours += STEP_HOURS * (_land_at(lat, lon) > 0.5)
    land_hours.append(hours)
    if abs(lat) > 42:  # extratropical transition: the track ends
      break
    turn = 1 / (1 + np.exp(-(abs(lat) - lat_recurve) / 3)) if kind == "TC" else 0.0
    lat, lon = _move(lat, lon, u0 + (u1 - u0) * turn, hemi * (v0 + 2.0 * turn))
  strength = _life_profile(life, 0.8)[: len(lats)] * np.exp(-np.array(land_hours) / 18.0)
  return _Track(kind, 0, birth, np.array(lats), np.array(lons), strength, p)


def _sample_etc_track(rng, birth: int, life: int) -> _Track:
  """An extratropical cyclone moving east and poleward, with its cold and warm fronts."""
  hemi = rng.choice([-1.0, 1.0])
  lat, lon = hemi * rng.uniform(30, 55), rng.uniform(0, 360)
  u, v = rng.uniform(7, 15), hemi * rng.uniform(0.5, 3.0)
  lats, lons = [], []
  for _ in range(life):
    lats.append(lat)
    lons.append(lon)
    lat, lon = _move(lat, lon, u, v)
  p = {
    "dp": rng.uniform(1_500, 5_000),
    "radius": rng.uniform(300, 700),  # Gaussian radius of the low, km
    "warm_angle": rng.uniform(-30, -5),  # direction of the warm front, deg from east
    "cold_angle": rng.uniform(-125, -95),  # direction of the cold front
    "warm_length": rng.uniform(500, 1_100),
    "cold_length": rng.uniform(1_000, 2_200),
    "delta_t": rng.uniform(4, 10),  # warm-sector temperature excess, K
    "moist": rng.uniform(3, 8),  # warm conveyor belt TMQ excess, kg/m2
    "front_width": rng.uniform(60, 120),  # km
    "cold_core": rng.uniform(2, 4),  # T500 deficit aloft, K
  }
  strength = _life_profile(life, 0.5)
  return _Track("ETC", 0, birth, np.array(lats), np.array(lons), strength, p)


def _sample_ar_track(rng, birth: int, life: int) -> _Track:
  """An atmospheric river from the subtropical ocean to a west-coast landfall."""
  coasts = _west_coasts()
  lat, lon = coasts[rng.integers(len(coasts))]
  drift = rng.uniform(-1.5, 1.5) / STEPS_PER_DAY  # landfall moves along the coast, deg/step
  lats = np.clip(lat + drift * np.arange(life), -62, 62)
  lons = np.full(life, lon)
  p = {
    "src_dlat": rng.uniform(10, 22),  # source this far equatorward of landfall, deg
    "src_dlon": rng.uniform(25, 55),  # and this far west
    "bow": rng.uniform(0, 5),  # equatorward bowing of the path midpoint, deg
    "inland": rng.uniform(300, 800),  # km the plume carries on inland
    "moist": rng.uniform(12, 25),  # TMQ excess on the axis, kg/m2
    "width": rng.uniform(150, 300),  # Gaussian half-width, km (full width 350-700 km)
    "jet": rng.uniform(10, 20),  # low-level jet along the axis, m/s
    "warm": rng.uniform(1, 3),  # K
  }
  strength = _life_profile(life, 0.6)
  return _Track("AR", 0, birth, lats, lons, strength, p)


def _sample_tracks(seed: int, first: int, last: int) -> list[_Track]:
  """Every event alive at any step in [first, last), from per-day random streams.

  Births on day d come from SeedSequence([seed, d]) alone, so the events of a
  step never depend on which range of steps was asked for.
  """
  tracks = []
  for day in range((first - _MAX_LIFE_STEPS) // STEPS_PER_DAY, (last - 1) // STEPS_PER_DAY + 1):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7E, day + 1_000_000]))
    season, _ = _season(DEFAULT_START + np.timedelta64(day * 24, "h"))
    serial = 0
    for kind, (mean_live, (life_lo, life_hi)) in _EVENT_RATES.items():
      for _ in range(rng.poisson(mean_live / ((life_lo + life_hi) / 2))):
        birth = day * STEPS_PER_DAY + int(rng.integers(STEPS_PER_DAY))
        life = max(2, int(round(rng.uniform(life_lo, life_hi) * STEPS_PER_DAY)))
        if kind in ("TC", "TD"):
          track = _sample_cyclone_track(rng, kind, birth, life, float(season))
        elif kind == "ETC":
          track = _sample_etc_track(rng, birth, life)
        else:
          track = _sample_ar_track(rng, birth, life)
        track.track_id = (day + 1_000_000) * 100 + serial
        serial += 1
        if track.birth < last and track.birth + len(track.lat) > first:
          tracks.append(track)
  return tracks


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 0.5 * (1 + np.tanh(x))


def _window_taper(r_km: np.ndarray, half_km: float) -> np.ndarray:
  """1 inside 0.6 of the window, falling smoothly (cos^2) to 0 at its edge."""
  x = np.clip((r_km / half_km - 0.6) / 0.4, 0, 1)
  return np.cos(0.5 * np.pi * x) ** 2


def etc_anomalies(
  north_km: np.ndarray,
  east_km: np.ndarray,
  lat_deg: np.ndarray,
  p: dict[str, float],
  *,
  hemi: float,
  strength: float,
  front_strength: float,
) -> dict[str, np.ndarray]:
  """Anomalies of an extratropical cyclone with a cold and a warm front.

  A Gaussian low (deficit dp, radius R) in gradient-wind balance; a warm sector
  between the fronts (`warm_angle`, `cold_angle` are directions from the centre,
  degrees counter-clockwise from east, mirrored in the southern hemisphere)
  delta_t warmer at the surface, cold air elsewhere; a PSL trough along each
  front; a warm-conveyor-belt moisture band just ahead of the cold front; a cold
  core aloft displaced poleward and west of the surface low (westward tilt).
  """
  r = np.hypot(north_km, east_km)
  radius = p["radius"]
  dp = p["dp"] * strength
  gauss = np.exp(-0.5 * (r / radius) ** 2)
  r_m = np.maximum(r, 1.0) * 1e3
  dpdr = dp * (r_m / (radius * 1e3) ** 2) * gauss
  rf2 = r_m * np.abs(coriolis(lat_deg)) / 2
  speed = np.sqrt(r_m * dpdr / RHO_AIR + rf2**2) - rf2
  ubot, vbot = _vortex_winds(north_km, east_km, r, 0.7 * speed, hemi, 25.0)
  u850, v850 = _vortex_winds(north_km, east_km, r, speed, hemi, 5.0)

  theta = np.arctan2(hemi * north_km, east_km)
  cold, warm = np.deg2rad(p["cold_angle"]), np.deg2rad(p["warm_angle"])
  width = p["front_width"]
  d_cold, along_cold = r * np.sin(theta - cold), r * np.cos(theta - cold)
  d_warm, along_warm = r * np.sin(warm - theta), r * np.cos(theta - warm)
  warm_sector = _sigmoid(d_cold / width) * _sigmoid(d_warm / width)
  on_cold = _sigmoid(along_cold / 100) * _sigmoid((p["cold_length"] - along_cold) / 150)
  on_warm = _sigmoid(along_warm / 100) * _sigmoid((p["warm_length"] - along_warm) / 150)
  cold_line = np.exp(-((d_cold / width) ** 2)) * on_cold
  warm_line = np.exp(-((d_warm / width) ** 2)) * on_warm
  envelope = np.exp(-((r / p["cold_length"]) ** 2))
  trefht = front_strength * p["delta_t"] * envelope * (1.5 * warm_sector - 0.5)
  conveyor = np.exp(-(((d_cold - 1.5 * width) / (2 * width)) ** 2)) * on_cold
  tmq = front_strength * p["moist"] * (conveyor + 0.5 * warm_line)
  aloft = np.exp(
    -0.5 * (np.hypot(north_km - hemi * 0.3 * radius, east_km + 0.5 * radius) / radius) ** 2
  )
  return {
    "PSL": -dp * gauss - 250.0 * front_strength * np.maximum(cold_line, warm_line),
    "UBOT": ubot,
    "VBOT": vbot,
    "U850": u850,
    "V850": v850,
    "TREFHT": trefht,
    "T500": 0.4 * trefht - p["cold_core"] * strength * aloft,
    "T200": 0.5 * p["cold_core"] * strength * aloft,
    "TMQ": tmq,
  }


def _ar_path(track: _Track, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
  """Axis of an AR at step k: (lat, unwrapped lon, along-axis envelope, landfall distance km).

  A quadratic Bezier curve from the subtropical source to the landfall point,
  bowed equatorward, carried on inland along its final direction.
  """
  p = track.p
  lat_l, lon_l = track.lat[k], track.lon[k]
  hemi = 1.0 if lat_l >= 0 else -1.0
  lat_s, lon_s = lat_l - hemi * p["src_dlat"], lon_l - p["src_dlon"]
  lat_m = 0.5 * (lat_s + lat_l) - hemi * p["bow"]
  lon_m = 0.5 * (lon_s + lon_l)
  t = np.linspace(0, 1, 48)[:, None]
  pts = (1 - t) ** 2 * np.array([lat_s, lon_s]) + 2 * t * (1 - t) * np.array([lat_m, lon_m])
  pts = pts + t**2 * np.array([lat_l, lon_l])
  tangent = pts[-1] - pts[-2]
  step_km = np.hypot(tangent[0], tangent[1] * np.cos(np.deg2rad(lat_l))) * KM_PER_DEG
  inland = pts[-1] + tangent * np.arange(1, 1 + int(np.ceil(p["inland"] / step_km)))[:, None]
  pts = np.concatenate([pts, inland])
  seg = np.hypot(np.diff(pts[:, 0]), np.diff(pts[:, 1]) * np.cos(np.deg2rad(pts[1:, 0])))
  s = np.concatenate([[0.0], np.cumsum(seg)]) * KM_PER_DEG
  sea = s[47]
  envelope = _sigmoid((s - 0.15 * sea) / (0.07 * sea)) * np.exp(
    -np.maximum(s - sea, 0) / (0.5 * p["inland"])
  )
  return pts[:, 0], pts[:, 1], envelope, sea


def ar_anomalies(
  lat_deg: np.ndarray,
  lon_deg: np.ndarray,
  path_lat: np.ndarray,
  path_lon: np.ndarray,
  envelope: np.ndarray,
  p: dict[str, float],
  *,
  strength: float,
) -> dict[str, np.ndarray]:
  """Anomalies of an atmospheric river around the axis given by path points.

  A Gaussian moisture plume across the axis (half-width `width` km), a
  low-level jet along it (weaker at the lowest level) and slightly warm air.
  """
  dlat = (lat_deg[..., None] - path_lat) * KM_PER_DEG
  dlon = (lon_deg[..., None] - path_lon + 180.0) % 360.0 - 180.0
  dlon = dlon * KM_PER_DEG * np.cos(np.deg2rad(path_lat))
  dist2 = dlat**2 + dlon**2
  nearest = dist2.argmin(axis=-1)
  d2 = np.take_along_axis(dist2, nearest[..., None], axis=-1)[..., 0]
  profile = strength * envelope[nearest] * np.exp(-0.5 * d2 / p["width"] ** 2)
  # Jet direction: the local tangent of the axis (east, north components).
  t_north = np.gradient(path_lat)
  t_east = np.gradient(path_lon) * np.cos(np.deg2rad(path_lat))
  norm = np.hypot(t_north, t_east)
  jet_e, jet_n = (t_east / norm)[nearest], (t_north / norm)[nearest]
  jet = p["jet"] * profile
  return {
    "TMQ": p["moist"] * profile,
    "U850": jet * jet_e,
    "V850": jet * jet_n,
    "UBOT": 0.6 * jet * jet_e,
    "VBOT": 0.6 * jet * jet_n,
    "TREFHT": p["warm"] * profile,
  }


def _pixel_box(
  grid: _Grid, lat_s: float, lat_n: float, lon_w: float, lon_e: float
) -> tuple[int, int, int, int, bool]:
  """(ymin, xmin, ymax, xmax, wraps): rows/columns covering a lat/lon extent.

  The maxima are exclusive (a box is grid[ymin:ymax, xmin:xmax]). `lon_w`, `lon_e`
  are unwrapped around the event (lon_w <= lon_e, either may leave [0, 360));
  where the extent crosses the 0/360 seam the box is clipped at the image edge on
  the side of the event's centre and `wraps` is True. Boxes span at least 2 pixels.
  """
  ymin = int(np.floor((lat_s + 90.0) / grid.dlat))
  ymax = int(np.floor((lat_n + 90.0) / grid.dlat)) + 1
  xmin = int(np.floor(lon_w / grid.dlon + 0.5))
  xmax = int(np.floor(lon_e / grid.dlon + 0.5)) + 1
  wraps = xmin < 0 or xmax > grid.nlon
  ymin, ymax = max(ymin, 0), min(ymax, grid.nlat)
  xmin, xmax = max(xmin, 0), min(xmax, grid.nlon)
  if ymax - ymin < 2:
    ymin, ymax = max(0, min(ymin, grid.nlat - 2)), max(0, min(ymin, grid.nlat - 2)) + 2
  if xmax - xmin < 2:
    xmin, xmax = max(0, min(xmin, grid.nlon - 2)), max(0, min(xmin, grid.nlon - 2)) + 2
  return ymin, xmin, ymax, xmax, wraps


def _event_row(grid, k_out, class_name, track_id, lat_c, lon_c, lat_s, lat_n, lon_w, lon_e, value):
  ymin, xmin, ymax, xmax, wraps = _pixel_box(grid, lat_s, lat_n, lon_w, lon_e)
  class_id = variables.FRONT_CLASS_ID if class_name == "WF" else variables.CLASS_IDS[class_name]
  return {
    "time_index": k_out,
    "class_id": class_id,
    "class_name": class_name,
    "ymin": ymin,
    "xmin": xmin,
    "ymax": ymax,
    "xmax": xmax,
    "lat_south": float(max(lat_s, -90.0)),
    "lat_north": float(min(lat_n, 90.0)),
    "lon_west": float(lon_w % 360.0),
    "lon_east": float(lon_e % 360.0),
    "lat_center": float(lat_c),
    "lon_center": float(lon_c % 360.0),
    "track_id": int(track_id),
    "intensity": float(value),
    "wraps": wraps,
  }


def _extent(lat_c: float, lon_c: float, half_km: float) -> tuple[float, float, float, float]:
  """(lat_s, lat_n, lon_w, lon_e) of a square of half-side half_km around a centre."""
  dlat = half_km / KM_PER_DEG
  dlon = min(half_km / (KM_PER_DEG * max(np.cos(np.deg2rad(lat_c)), 0.05)), 179.0)
  return lat_c - dlat, lat_c + dlat, lon_c - dlon, lon_c + dlon


def _add(fields: dict, t: int, r0: int, r1: int, cols: np.ndarray, anomalies: dict) -> None:
  for name, value in anomalies.items():
    # fields[name][t] is a view, so the fancy-indexed update writes through.
    fields[name][t][r0:r1, cols] += value.astype(np.float32)


def _plant_step(grid: _Grid, tracks: list[_Track], step: int, k_out: int, t: int, fields: dict):
  """Plant every event alive at absolute `step` into row t of the chunk; return table rows."""
  rows = []
  min_km = grid.dy_km  # events narrower than a grid cell are widened so they stay visible
  for track in tracks:
    if not track.alive(step):
      continue
    k = step - track.birth
    p, lat_c, lon_c, strength = track.p, track.lat[k], track.lon[k], track.strength[k]
    hemi = 1.0 if lat_c >= 0 else -1.0
    if track.kind in ("TC", "TD"):
      floor = 250.0 if track.kind == "TC" else 100.0
      dp = floor + (p["dp_peak"] - floor) * strength
      scale = dp / p["dp_peak"]
      rmax = max(p["rmax"], 0.75 * min_km)
      moist_radius = max(p["moist_radius"], 1.5 * min_km)
      params = dict(p, dp=dp, rmax=rmax, lat=lat_c, moist_radius=moist_radius)
      params.update(
        warm200=p["warm200"] * scale,
        warm500=p["warm500"] * scale,
        moist=p["moist"] * (0.4 + 0.6 * strength),
        warm_radius=max(p["warm_radius"], 1.5 * min_km),
      )
      half = max(1_500.0, 12 * rmax)
      r0, r1, cols, north, east, lat = grid.window(lat_c, lon_c, half)
      anomalies = cyclone_anomalies(north, east, lat, params)
      taper = _window_taper(np.hypot(north, east), half)
      anomalies = {name: value * taper for name, value in anomalies.items()}
      anomalies["TMQ_ANOM"] = anomalies.pop("TMQ")  # kg/m2, capped in _derived
      _add(fields, t, r0, r1, cols, anomalies)
      wind = 0.8 * holland_max_wind(dp, p["b"])
      name = "TC" if track.kind == "TC" and wind >= 17.0 else "TD"
      box_km = np.clip(max(rmax * 0.105 ** (-1 / p["b"]), 1.2 * moist_radius), 150, 700)
      rows.append(
        _event_row(
          grid, k_out, name, track.track_id, lat_c, lon_c, *_extent(lat_c, lon_c, box_km), dp
        )
      )
    elif track.kind == "ETC":
      age_days = k / STEPS_PER_DAY
      front_strength = strength * min(1.0, age_days / 0.75)
      params = dict(
        p, radius=max(p["radius"], 2 * min_km), front_width=max(p["front_width"], 0.75 * min_km)
      )
      half = max(3.5 * params["radius"], params["cold_length"] + 600)
      r0, r1, cols, north, east, lat = grid.window(lat_c, lon_c, half)
      anomalies = etc_anomalies(
        north, east, lat, params, hemi=hemi, strength=strength, front_strength=front_strength
      )
      taper = _window_taper(np.hypot(north, east), half)
      anomalies = {name: value * taper for name, value in anomalies.items()}
      anomalies["TMQ_ANOM"] = anomalies.pop("TMQ")
      _add(fields, t, r0, r1, cols, anomalies)
      # Labelled once deep enough to hold closed isobars against the background
      # gradient (as a TECA-style detector would find it); the box spans 1.5 R.
      if p["dp"] * strength >= ETC_MIN_DEFICIT:
        rows.append(
            _event_row(
                grid, k_out, "ETC", track.track_id, lat_c, lon_c,
                *_extent(lat_c, lon_c, 1.5 * params["radius"]), p["dp"] * strength,
            )
        )  # fmt: skip
      if front_strength >= 0.3:
        for front, sub_id in (("cold", 1), ("warm", 2)):
          angle = np.deg2rad(params[f"{front}_angle"])
          along = np.linspace(0, params[f"{front}_length"], 16)
          f_lat = lat_c + hemi * along * np.sin(angle) / KM_PER_DEG
          f_lon = lon_c + along * np.cos(angle) / (KM_PER_DEG * np.cos(np.deg2rad(f_lat)))
          pad = 2 * params["front_width"]
          pad_lon = pad / (KM_PER_DEG * np.cos(np.deg2rad(f_lat)))
          rows.append(
              _event_row(
                  grid, k_out, "WF", track.track_id * 10 + sub_id,
                  f_lat[len(f_lat) // 2], f_lon[len(f_lon) // 2],
                  f_lat.min() - pad / KM_PER_DEG, f_lat.max() + pad / KM_PER_DEG,
                  (f_lon - pad_lon).min(), (f_lon + pad_lon).max(),
                  params["delta_t"] * front_strength,
              )
          )  # fmt: skip
    else:
      params = dict(p, width=max(p["width"], min_km))
      path_lat, path_lon, envelope, _ = _ar_path(track, k)
      # Unwrap the axis around the landfall longitude, then cover it with one window.
      path_lon = lon_c + (path_lon - lon_c + 180.0) % 360.0 - 180.0
      lat_mid = 0.5 * (path_lat.min() + path_lat.max())
      lon_mid = 0.5 * (path_lon.min() + path_lon.max())
      pad = 3 * params["width"]
      half = max(
        (path_lat.max() - path_lat.min()) / 2 * KM_PER_DEG + pad,
        (path_lon.max() - path_lon.min()) / 2 * KM_PER_DEG * np.cos(np.deg2rad(lat_mid)) + pad,
      )
      r0, r1, cols, _, _, lat = grid.window(lat_mid, lon_mid, half)
      lon = np.broadcast_to(grid.lon[cols][None, :], (r1 - r0, cols.size))
      anomalies = ar_anomalies(
        np.broadcast_to(lat, lon.shape),
        lon,
        path_lat,
        path_lon,
        envelope,
        params,
        strength=strength,
      )
      anomalies["TMQ_ANOM"] = anomalies.pop("TMQ")
      _add(fields, t, r0, r1, cols, anomalies)
      core = envelope >= 0.2
      pad = 1.5 * params["width"]
      pad_lon = pad / (KM_PER_DEG * np.cos(np.deg2rad(path_lat[core])))
      rows.append(
          _event_row(
              grid, k_out, "AR", track.track_id, lat_c, lon_c,
              path_lat[core].min() - pad / KM_PER_DEG, path_lat[core].max() + pad / KM_PER_DEG,
              (path_lon[core] - pad_lon).min(), (path_lon[core] + pad_lon).max(),
              p["moist"] * strength,
          )
      )  # fmt: skip
  return rows


EVENT_COLUMNS: tuple[str, ...] = (
    "time", "time_index", "class_id", "class_name", "ymin", "xmin", "ymax", "xmax",
    "lat_south", "lat_north", "lon_west", "lon_east", "lat_center", "lon_center",
    "track_id", "intensity", "wraps",
)  # fmt: skip

# Points per chunk of time steps generated at once: vectorised over time, bounded memory.
_CHUNK_POINTS = 2_000_000


def generate_fields(
  num_times: int,
  *,
  seed: int,
  nlat: int = 768,
  nlon: int = 1152,
  start: int = 0,
) -> tuple[xr.Dataset, pd.DataFrame]:
  """CAM5-like global snapshots with planted, moving TCs, TDs, ETCs (with fronts) and ARs.

  Returns a Dataset with the 16 variables of `variables.EXTREMEWEATHER_CHANNELS`,
  each float32 (time, lat, lon) in physical units with CF attributes, on the grid
  of `latlon_grid(nlat, nlon)`, 6-hourly from DEFAULT_START + `start` steps; and
  the table of events, one row per event per time step, with columns
  `EVENT_COLUMNS`: the time and its index in the Dataset, the class (id from
  `variables.CLASS_IDS`; fronts `variables.FRONT_CLASS_ID` with class_name "WF"),
  the pixel box (ymin, xmin, ymax, xmax; y on the latitude axis, maxima
  exclusive), its edges in degrees (lon_west > lon_east where it crosses 0/360;
  `wraps` then marks the pixel box clipped at the image edge), the centre (for
  ARs the landfall point, for fronts the front's midpoint), the track id (shared
  by the steps of one event; a TC that weakens is the same track classed TD) and
  `intensity`: pressure deficit (Pa) for TD/TC/ETC, TMQ excess on the axis
  (kg/m2) for AR, warm-sector temperature excess (K) for fronts.

  Deterministic per seed, and time step i is the same whatever `start` and
  `num_times` include it: generating steps 0-99 and then 100-199 equals
  generating 0-199 at once: a 768 x 1152 snapshot holds 57 MB, so long runs at
  full resolution are generated (and written) in chunks of steps. Sizes are
  physical (km), so events keep their size on every grid; those narrower than a
  grid cell are widened to about one cell.
  """
  if num_times < 1 or start < 0:
    raise ValueError(f"num_times must be >= 1 and start >= 0, got {num_times}, {start}")
  if nlat < 8 or nlon < 8:
    raise ValueError(f"the grid must be at least 8 x 8, got {nlat} x {nlon}")
  grid = _grid(nlat, nlon)
  noise = _NoiseBank(seed, grid)
  waves = _planetary_waves(seed)
  tracks = _sample_tracks(seed, start, start + num_times)
  times = DEFAULT_START + np.arange(start, start + num_times) * np.timedelta64(STEP_HOURS, "h")

  out = {
    name: np.empty((num_times, nlat, nlon), np.float32)
    for name in variables.EXTREMEWEATHER_CHANNELS
  }
  rows = []
  chunk = max(1, _CHUNK_POINTS // (nlat * nlon))
  for c0 in range(0, num_times, chunk):
    c1 = min(num_times, c0 + chunk)
    fields = _background(grid, noise, waves, range(start + c0, start + c1), times[c0:c1])
    fields["TMQ_ANOM"] = np.zeros_like(fields["PSL"])
    for t in range(c1 - c0):
      rows += _plant_step(grid, tracks, start + c0 + t, c0 + t, t, fields)
    for name, value in _derived(grid, fields, fields["TMQ_ANOM"]).items():
      out[name][c0:c1] = value
  # Rivers are labelled only where the river is moist enough (TECA: TMQ >= 20 kg/m2).
  rows = [
    row
    for row in rows
    if row["class_name"] != "AR"
    or out["TMQ"][row["time_index"], row["ymin"] : row["ymax"], row["xmin"] : row["xmax"]].max()
    >= AR_MIN_TMQ
  ]

  ds = xr.Dataset(
    {
      name: (("time", "lat", "lon"), out[name], _cf_attrs(name))
      for name in variables.EXTREMEWEATHER_CHANNELS
    },
    coords={
      "time": ("time", times, {"long_name": "time", "standard_name": "time"}),
      "lat": ("lat", grid.lat, {"units": "degrees_north", "long_name": "latitude"}),
      "lon": ("lon", grid.lon, {"units": "degrees_east", "long_name": "longitude"}),
    },
    attrs={
      "title": "Synthetic CAM5-like fields with planted extreme-weather events",
      "source": "climjax.data.synthetic.generate_fields",
      "seed": seed,
      "first_step": start,
      "Conventions": "CF-1.8",
    },
  )
  events = pd.DataFrame(rows, columns=[c for c in EVENT_COLUMNS if c != "time"])
  events.insert(0, "time", times[events["time_index"].to_numpy(int)])
  events = events.sort_values(["time_index", "class_id", "track_id"], kind="stable")
  events = events.reset_index(drop=True)
  events.attrs = {
    "box_convention": "pixels (ymin, xmin, ymax, xmax), y on latitude, maxima exclusive",
    "intensity_units": "Pa for TD/TC/ETC, kg/m2 for AR, K for WF",
  }
  return ds, events


def _cf_attrs(name: str) -> dict[str, str]:
  v = variables.CAM5_VARIABLES[name]
  return {"units": v.units, "long_name": v.long_name}


@functools.lru_cache(maxsize=4)
def _grid(nlat: int, nlon: int) -> _Grid:
  return _Grid(nlat, nlon)


def padded_boxes(
  events: pd.DataFrame,
  num_times: int,
  *,
  max_boxes: int = 15,
  classes: tuple[int, ...] = (0, 1, 2, 3),
) -> np.ndarray:
  """Boxes per time step in the ExtremeWeather layout: int32 (num_times, max_boxes, 5).

  Rows are (ymin, xmin, ymax, xmax, class) with maxima exclusive, padded with -1.
  Only `classes` are kept (by default the four ExtremeWeather classes, without
  fronts); where a step has more than `max_boxes` events the largest boxes are
  kept.
  """
  boxes = np.full((num_times, max_boxes, 5), -1, np.int32)
  kept = events[events["class_id"].isin(classes)]
  area = (kept["ymax"] - kept["ymin"]) * (kept["xmax"] - kept["xmin"])
  kept = kept.assign(_area=area).sort_values(["time_index", "_area"], ascending=[True, False])
  for t, group in kept.groupby("time_index", sort=True):
    rows = group[["ymin", "xmin", "ymax", "xmax", "class_id"]].to_numpy(np.int32)[:max_boxes]
    boxes[int(t), : len(rows)] = rows
  return boxes


def generate_arrays(
  num_times: int,
  *,
  seed: int,
  nlat: int = 768,
  nlon: int = 1152,
  start: int = 0,
  max_boxes: int = 15,
  classes: tuple[int, ...] = (0, 1, 2, 3),
) -> tuple[np.ndarray, np.ndarray]:
  """`generate_fields` as arrays for a detector: x float32 (N, nlat, nlon, 16), boxes.

  Channels in `variables.EXTREMEWEATHER_CHANNELS` order (NHWC, physical units);
  boxes int32 (N, max_boxes, 5) from `padded_boxes`.
  """
  ds, events = generate_fields(num_times, seed=seed, nlat=nlat, nlon=nlon, start=start)
  x = np.stack([ds[name].values for name in variables.EXTREMEWEATHER_CHANNELS], axis=-1)
  return x, padded_boxes(events, num_times, max_boxes=max_boxes, classes=classes)
