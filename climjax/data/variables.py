"""CAM5 variable catalogue, channel orders and event class ids.

The single source of truth for variable names, units and the channel order of
every task. Names are CAM5 history-file names; `ALIASES` maps the single-level
names of other products (ERA5, CMIP) onto them. The reader identifies
variables with the fuller tables of `climjax.data.archives` (CF standard
names, GRIB/NCEP names, fields on pressure levels), which include these.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Variable:
  name: str
  units: str
  long_name: str


CAM5_VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in [
        Variable("PRECT", "m/s", "Total (convective and large-scale) precipitation rate"),
        Variable("PS", "Pa", "Surface pressure"),
        Variable("PSL", "Pa", "Sea level pressure"),
        Variable("QREFHT", "kg/kg", "Reference height humidity"),
        Variable("T200", "K", "Temperature at 200 mbar pressure surface"),
        Variable("T500", "K", "Temperature at 500 mbar pressure surface"),
        Variable("TMQ", "kg/m2", "Total (vertically integrated) precipitable water"),
        Variable("TREFHT", "K", "Reference height temperature"),
        Variable("TS", "K", "Surface temperature (radiative)"),
        Variable("U850", "m/s", "Zonal wind at 850 mbar pressure surface"),
        Variable("UBOT", "m/s", "Lowest model level zonal wind"),
        Variable("V850", "m/s", "Meridional wind at 850 mbar pressure surface"),
        Variable("VBOT", "m/s", "Lowest model level meridional wind"),
        Variable("Z1000", "m", "Geopotential Z at 1000 mbar pressure surface"),
        Variable("Z200", "m", "Geopotential Z at 200 mbar pressure surface"),
        Variable("ZBOT", "m", "Lowest model level height"),
    ]
}

# Channel order of the released ExtremeWeather climo_YYYY.h5 files (Racah et al. 2017).
EXTREMEWEATHER_CHANNELS: tuple[str, ...] = (
    "PRECT", "PS", "PSL", "QREFHT", "T200", "T500", "TMQ", "TREFHT",
    "TS", "U850", "UBOT", "V850", "VBOT", "Z1000", "Z200", "ZBOT",
)  # fmt: skip

# Inputs of the supervised classifiers (Liu et al. 2016).
TC_CHANNELS: tuple[str, ...] = ("PSL", "UBOT", "VBOT", "TMQ", "U850", "V850", "T200", "T500")
AR_CHANNELS: tuple[str, ...] = ("TMQ", "LANDFRAC")  # LANDFRAC: the land-sea mask, 1 on land
WF_CHANNELS: tuple[str, ...] = ("TREFHT", "PRECT", "PSL")

TASK_CHANNELS: dict[str, tuple[str, ...]] = {
    "tc": TC_CHANNELS,
    "ar": AR_CHANNELS,
    "wf": WF_CHANNELS,
    "detection": EXTREMEWEATHER_CHANNELS,
}

# Event classes of the ExtremeWeather boxes; fronts are a fifth class where used.
CLASS_NAMES: tuple[str, ...] = ("TD", "TC", "ETC", "AR")
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
FRONT_CLASS_ID = 4
CLASS_NAMES_WITH_FRONTS: tuple[str, ...] = CLASS_NAMES + ("WF",)

# Other names for the same quantity in other products, mapped to CAM5 names (a subset of
# `archives.ARCHIVE_ALIASES`, which the reader uses; tests/test_archives.py checks it).
ALIASES: dict[str, str] = {
    "msl": "PSL", "slp": "PSL", "psl": "PSL",
    "sp": "PS", "ps": "PS",
    "tcw": "TMQ", "tcwv": "TMQ", "prw": "TMQ",
    "u10": "UBOT", "v10": "VBOT", "uas": "UBOT", "vas": "VBOT",
    "t2m": "TREFHT", "tas": "TREFHT",
    "tp": "PRECT", "pr": "PRECT",
    "skt": "TS", "ts": "TS",
    "huss": "QREFHT",
}  # fmt: skip


def channel_index(channels: tuple[str, ...], name: str) -> int:
  """Position of variable `name` in `channels`, with an error that lists them."""
  try:
    return channels.index(name)
  except ValueError:
    raise KeyError(f"variable {name!r} is not among the channels {channels}") from None
