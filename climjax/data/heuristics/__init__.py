"""TECA-style heuristic detectors: tropical and extratropical cyclones, their tracks, rivers, fronts.

These make labels (positions and boxes) from fields without hand labelling,
the way the ExtremeWeather labels were made (docs/DESIGN.md section 4). Every
threshold is in physical units and every distance in degrees of great circle or
km; search windows become pixel footprints through the grid spacing (at least
a cell or two). Grids coarser than 1.25 deg smooth vorticity and pressure
minima, so there the TC thresholds are scaled with the spacing (TECA's values
at 1.25 deg or finer; `detect_tropical_cyclones(reference_spacing_deg=...)`,
the values used are in the result's attrs).

Tropical cyclones follow TECA's port of the GFDL detector (Vitart et al. 1997,
Knutson et al. 2007; TECA's gfdl_tc_candidates and gfdl_tc_trajectory). A
candidate is a sea-level pressure minimum, the lowest point of a 7.75 deg wide
(lat x lon) window around it, such that

- the cyclonic 850 hPa relative vorticity reaches 1.6e-4 1/s within 2 deg of
  it (vorticity maximum and pressure minimum within 2 deg of each other);
- PSL rises by at least 400 Pa within 5 deg in every direction (a closed low).

Each candidate also carries two flags, as in TECA, used by the tracker rather
than to drop candidates (`require_warm_core=True` drops them instead):

- warm core: the core temperature, mean of T500 and T200, has its maximum
  within 2 deg of the centre and falls by at least 0.8 K within 5 deg of that
  maximum in every direction;
- thickness: the 200-1000 hPa thickness (Z200 - Z1000) likewise falls by at
  least 50 m within 4 deg of its maximum.

"Every direction" is tested, as in GFDL/TECA, along 8 rays (N, NE, E, ...;
`num_directions`), here great circles sampled at half the grid spacing. A criterion whose variables are missing is skipped
(its flag is True) with a warning and listed in `df.attrs["skipped_criteria"]`.

Tracks join candidates at consecutive times that are close enough for a storm
moving at most 1,600 km/day; a track is a cyclone if, for at least 2 days in
all, its wind is at least 17 m/s while it has a warm core and a thick core.

Extratropical cyclones follow TempestExtremes' ETC detection (Ullrich and
Zarzycki 2017; `DetectNodes --closedcontourcmd PSL,200,6,0 --mergedist 6`,
`StitchNodes --range 6 --min_endpoint_dist 12`): PSL minima between 20 and 80
deg of latitude, the lowest of any within 6 deg of each other, around which PSL
rises by at least 200 Pa within 6 deg along every ray (the closed-contour test,
on the TC detector's rays); joined into tracks by the TC tracker at up to 6 deg
per 6 h, and kept where a track lasts at least 1 day and ends at least 12 deg
from where it began (quasi-stationary lows are not storms).

Tropical depressions (for the detector's TD class) are tropical lows below
storm strength: TC-detector candidates with its thresholds relaxed to 1e-4 1/s
and 100 Pa, within 30 deg of the equator, with winds below 17 m/s, away from
any TC or ETC (`labels`).

Fronts use the thermal front parameter (Renard and Clarke 1965; Hewson 1998),
TFP = -grad|grad tau| . grad tau / |grad tau|, of tau = T850, or TREFHT where
there is no T850 (CAM5's ExtremeWeather variables have none) after 100 km of
smoothing. TREFHT steps at every coastline, so on it the derivatives are taken
separately over sea and over land, each surface's field continued across the
other's cells. Front pixels have TFP >= 0.3 K/(100 km)^2 and a gradient (the
masking parameter) >= 1.5 K/100 km, between 20 and 60 deg; a front is a
connected region of them at least 500 km long.

Atmospheric rivers (older TECA, Prabhat et al. 2012): connected regions of
TMQ >= 20 kg/m2 outside the deep tropics, at least 2,000 km long (the largest
great-circle distance across the region), at most 1,250 km wide (area divided
by length), reaching land. The default mode ("auto") keeps the moist
subtropical belt out without losing rivers on moist latitudes: a region that
fails as too wide, or that runs along the band's 20 deg edge further than a
river is wide, is cut down to where TMQ stands 10 kg/m2 above its zonal median
and tested again; mode="threshold" is the plain threshold, mode="anomaly"
applies the anomaly test everywhere. Components connect across the longitude
seam of a global grid.

Modules
-------
This package re-exports the names of all its modules, so
`from climjax.data import heuristics; heuristics.detect_tropical_cyclones(ds)`
reaches everything:

* `sphere`: great-circle distances and destinations, relative vorticity.
* `grid`: the (lat, lon) grid of a dataset and reading fields off it.
* `rays`: fields sampled along great-circle rays ("every direction").
* `lows`: closed PSL lows: minima, merging, centres, boxes.
* `tropical_cyclones`: `detect_tropical_cyclones`, `TC_COLUMNS`.
* `cyclone_tracks`: `track_cyclones`.
* `extratropical_cyclones`: `detect_extratropical_cyclones`,
  `track_extratropical_cyclones`, `ETC_COLUMNS`.
* `atmospheric_rivers`: `detect_atmospheric_rivers`, `AR_COLUMNS`.
* `fronts`: `detect_fronts`, `thermal_front_parameter`, `FRONT_COLUMNS`.
* `labels`: `label_events`, every class at once in the synthetic events' layout.
* `validation`: `score_labels`, recall, false alarms and position error of
  labels against the synthetic generator's planted events
  (`launch/validate_heuristics.py` prints them).
"""

from __future__ import annotations

from climjax.data.heuristics.atmospheric_rivers import AR_COLUMNS, detect_atmospheric_rivers
from climjax.data.heuristics.cyclone_tracks import track_cyclones
from climjax.data.heuristics.extratropical_cyclones import (
  ETC_COLUMNS,
  detect_extratropical_cyclones,
  track_extratropical_cyclones,
)
from climjax.data.heuristics.fronts import FRONT_COLUMNS, detect_fronts, thermal_front_parameter
from climjax.data.heuristics.labels import LABEL_CLASSES, LABEL_COLUMNS, label_events
from climjax.data.heuristics.sphere import (
  EARTH_RADIUS_KM,
  KM_PER_DEG,
  destination,
  great_circle_km,
  relative_vorticity,
)
from climjax.data.heuristics.tropical_cyclones import TC_COLUMNS, detect_tropical_cyclones
from climjax.data.heuristics.validation import SCORE_COLUMNS, score_labels

__all__ = [
  "AR_COLUMNS",
  "EARTH_RADIUS_KM",
  "ETC_COLUMNS",
  "FRONT_COLUMNS",
  "KM_PER_DEG",
  "LABEL_CLASSES",
  "LABEL_COLUMNS",
  "SCORE_COLUMNS",
  "TC_COLUMNS",
  "destination",
  "detect_atmospheric_rivers",
  "detect_extratropical_cyclones",
  "detect_fronts",
  "detect_tropical_cyclones",
  "great_circle_km",
  "label_events",
  "relative_vorticity",
  "score_labels",
  "thermal_front_parameter",
  "track_cyclones",
  "track_extratropical_cyclones",
]
