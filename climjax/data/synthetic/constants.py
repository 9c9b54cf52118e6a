"""Physical constants, the pixel spacing of the 25 km CAM5 grid and the Coriolis parameter.

Shared by every generator of `climjax.data.synthetic`.
"""

from __future__ import annotations

import numpy as np

# Physical constants.
OMEGA = 7.292e-5  # Earth's rotation rate, 1/s
KM_PER_DEG = 111.195  # km per degree of great circle (Earth radius 6,371 km)
RHO_AIR = 1.15  # near-surface air density in the tropics, kg/m3

# Pixel spacing of the 25 km CAM5 grid (768 x 1152).
CAM5_DLAT = 180.0 / 768
CAM5_DLON = 360.0 / 1152


def coriolis(lat_deg: np.ndarray) -> np.ndarray:
  """Coriolis parameter f = 2 Omega sin(lat), in 1/s."""
  return 2 * OMEGA * np.sin(np.deg2rad(lat_deg))
