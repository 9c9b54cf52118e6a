"""TECA-style heuristic detectors: tropical cyclones, their tracks, atmospheric rivers.

These make labels (positions and boxes) from fields without hand labelling,
the way the ExtremeWeather labels were made (DESIGN.md section 4). Every
threshold is in physical units and every distance in degrees of great circle or
km, so the detectors work unchanged on any grid; search windows become pixel
footprints through the grid spacing.

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

Atmospheric rivers (older TECA, Prabhat et al. 2012): connected regions of
TMQ >= 20 kg/m2 outside the deep tropics, at least 2,000 km long (the largest
great-circle distance across the region), at most 1,250 km wide (area divided
by length), reaching land. By default TMQ must also stand 10 kg/m2 above its
zonal median, which keeps the moist subtropical belt from joining every river
(`min_tmq_anomaly=None` restores the plain threshold). Components connect
across the longitude seam of a global grid.

Modules
-------
This package re-exports the names of all its modules, so
`from climjax.data import heuristics; heuristics.detect_tropical_cyclones(ds)`
reaches everything:

* `sphere`: great-circle distances and destinations, relative vorticity.
* `grid`: the (lat, lon) grid of a dataset and reading fields off it.
* `rays`: fields sampled along great-circle rays ("every direction").
* `tropical_cyclones`: `detect_tropical_cyclones`, `TC_COLUMNS`.
* `cyclone_tracks`: `track_cyclones`.
* `atmospheric_rivers`: `detect_atmospheric_rivers`, `AR_COLUMNS`.
"""

from __future__ import annotations

from climjax.data.heuristics.atmospheric_rivers import AR_COLUMNS, detect_atmospheric_rivers
from climjax.data.heuristics.cyclone_tracks import track_cyclones
from climjax.data.heuristics.sphere import (
  EARTH_RADIUS_KM,
  KM_PER_DEG,
  destination,
  great_circle_km,
  relative_vorticity,
)
from climjax.data.heuristics.tropical_cyclones import TC_COLUMNS, detect_tropical_cyclones

__all__ = [
  "AR_COLUMNS",
  "EARTH_RADIUS_KM",
  "KM_PER_DEG",
  "TC_COLUMNS",
  "destination",
  "detect_atmospheric_rivers",
  "detect_tropical_cyclones",
  "great_circle_km",
  "relative_vorticity",
  "track_cyclones",
]
