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
Knobs of the event climate: `generate_fields(rates={"TC": 2.0}, intensities=
{"AR": 1.2})` (or `config.data` fields `tc_rate`, `ar_intensity`, ... read by
`event_knobs`; names `EVENT_KNOBS`) multiply the births of a kind (TC, TD, ETC,
AR) and the amplitude of each event (TC and ETC pressure deficit, AR moisture).
Extra births and thinning draw from streams of their own, so 1.0 is the default
climate bit for bit and a TC rate of 2 adds TCs without moving any other event.
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

Modules
-------
This package re-exports the names of all its modules, so
`from climjax.data import synthetic; synthetic.generate_fields(...)` reaches
everything:

* `constants`: physical constants, the CAM5 pixel spacing, `coriolis`.
* `climatology`: zonal-mean climatology and the seasonal cycle.
* `noise`: spatially correlated noise (`smooth_noise`).
* `vortices`: TCs, TDs and shear lines (Holland vortex, parameter ranges).
* `cyclone_patches`: the TC classifier's patches (`tc_patches`, `stream_blocks`).
* `global_grid`: the global grid (`latlon_grid`) and the 6-hourly time axis.
* `background`: the global background state (waves, evolving noise, seasons).
* `thermodynamics`: saturation, precipitation and the derived variables.
* `tracks`: births, motion and life cycle of the global events.
* `extratropical`: ETCs with their fronts, and atmospheric rivers.
* `planting`: planting the events into the fields, and their boxes.
* `snapshots`: `generate_fields`, `padded_boxes`, `generate_arrays`.
"""

from __future__ import annotations

from climjax.data.synthetic.climatology import _zonal_mean as _zonal_mean
from climjax.data.synthetic.constants import (
  CAM5_DLAT,
  CAM5_DLON,
  KM_PER_DEG,
  OMEGA,
  RHO_AIR,
  coriolis,
)
from climjax.data.synthetic.cyclone_patches import (
  BLOCK_SIZE,
  TC_NEGATIVE_KINDS,
  TC_NEGATIVE_MIX,
  kind_names,
  stream_blocks,
  tc_patches,
)
from climjax.data.synthetic.extratropical import _ar_path as _ar_path
from climjax.data.synthetic.extratropical import _sigmoid as _sigmoid
from climjax.data.synthetic.extratropical import ar_anomalies, etc_anomalies
from climjax.data.synthetic.global_grid import DEFAULT_START, STEP_HOURS, STEPS_PER_DAY, latlon_grid
from climjax.data.synthetic.noise import smooth_noise
from climjax.data.synthetic.planting import AR_MIN_TMQ, ETC_MIN_DEFICIT
from climjax.data.synthetic.snapshots import (
  EVENT_COLUMNS,
  TEST_SEED_OFFSET,
  generate_arrays,
  generate_fields,
  padded_boxes,
)
from climjax.data.synthetic.thermodynamics import (
  GRAVITY,
  R_DRY,
  precipitation_rate,
  saturation_specific_humidity,
  tmq_saturation,
)
from climjax.data.synthetic.tracks import (
  EVENT_KNOBS,
  INTENSITY_KINDS,
  RATE_KINDS,
  event_knobs,
)
from climjax.data.synthetic.tracks import _land_at as _land_at
from climjax.data.synthetic.tracks import _Track as _Track
from climjax.data.synthetic.tracks import _west_coasts as _west_coasts
from climjax.data.synthetic.vortices import (
  TC_MIN_WIND,
  TD_MAX_WIND,
  cyclone_anomalies,
  holland_max_wind,
  holland_wind,
  sample_shear_line_params,
  sample_tc_params,
  sample_td_params,
  shear_line_anomalies,
)

# The public API; the internals imported `as` themselves above (_Track, _ar_path,
# _land_at, _sigmoid, _west_coasts, _zonal_mean) are what climjax.data.patches
# builds the AR and WF patches from.
__all__ = [
  "AR_MIN_TMQ",
  "BLOCK_SIZE",
  "CAM5_DLAT",
  "CAM5_DLON",
  "DEFAULT_START",
  "ETC_MIN_DEFICIT",
  "EVENT_COLUMNS",
  "EVENT_KNOBS",
  "GRAVITY",
  "INTENSITY_KINDS",
  "KM_PER_DEG",
  "OMEGA",
  "RATE_KINDS",
  "RHO_AIR",
  "R_DRY",
  "STEPS_PER_DAY",
  "STEP_HOURS",
  "TC_MIN_WIND",
  "TC_NEGATIVE_KINDS",
  "TC_NEGATIVE_MIX",
  "TD_MAX_WIND",
  "TEST_SEED_OFFSET",
  "ar_anomalies",
  "coriolis",
  "cyclone_anomalies",
  "etc_anomalies",
  "event_knobs",
  "generate_arrays",
  "generate_fields",
  "holland_max_wind",
  "holland_wind",
  "kind_names",
  "latlon_grid",
  "padded_boxes",
  "precipitation_rate",
  "sample_shear_line_params",
  "sample_tc_params",
  "sample_td_params",
  "saturation_specific_humidity",
  "shear_line_anomalies",
  "smooth_noise",
  "stream_blocks",
  "tc_patches",
  "tmq_saturation",
]
