"""Which criteria each heuristic label rests on: those applied, and those skipped for want of data.

A detector skips a criterion whose variables the dataset lacks (no V850: no
vorticity test) and counts it as met, as TECA does. Every row of a detector's
table, and so every label, says so in three columns (`CRITERIA_COLUMNS`):

- `criteria`: the criteria applied to it, comma separated (`closed_low,vorticity,...`);
- `criteria_skipped`: those skipped and counted as met ("" when none);
- `reduced`: whether any was skipped, i.e. the label rests on fewer criteria.

With `require_all_criteria=True` a detector instead refuses a dataset that
lacks a criterion's variables (`refuse`, one line naming them) and drops any
candidate whose criterion could not be measured (a NaN wind).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from climjax.data.errors import DataError
from climjax.data.heuristics.grid import _source

CRITERIA_COLUMNS: tuple[str, ...] = ("criteria", "criteria_skipped", "reduced")


def joined(names: Iterable[str]) -> str:
  """Criterion names as one comma-separated cell."""
  return ",".join(names)


def names_of(cell) -> list[str]:
  """A `criteria` / `criteria_skipped` cell back to its names."""
  return [n for n in str(cell).split(",") if n] if isinstance(cell, str) else []


def columns(
  num_rows: int, applied: Sequence[str], skipped: Sequence[str], per_row: dict | None = None
) -> dict[str, np.ndarray]:
  """The `CRITERIA_COLUMNS` of `num_rows` rows.

  `applied` and `skipped` hold for every row; `per_row` maps a criterion of
  `applied` to a boolean array, True where that row could not be measured
  (it is then skipped for that row alone).
  """
  per_row = per_row or {}
  applied_cells, skipped_cells = [], []
  for i in range(num_rows):
    lost = [c for c in applied if c in per_row and per_row[c][i]]
    applied_cells.append(joined(c for c in applied if c not in lost))
    skipped_cells.append(joined([*skipped, *lost]))
  skipped_arr = np.asarray(skipped_cells, dtype=object)
  return {
    "criteria": np.asarray(applied_cells, dtype=object),
    "criteria_skipped": skipped_arr,
    "reduced": np.asarray([bool(s) for s in skipped_cells], dtype=bool),
  }


def refuse(ds: xr.Dataset, detector: str, needs: dict[str, Sequence[str]]) -> None:
  """Raises one DataError line naming the variables the skipped criteria need.

  `needs` maps each skipped criterion to the variables it needs.
  """
  missing = list(dict.fromkeys(v for names in needs.values() for v in names if v not in ds))
  what = "; ".join(f"the {c} criterion needs {', '.join(v)}" for c, v in needs.items())
  raise DataError(
    _source(ds),
    f"not found, required by {detector}(require_all_criteria=True): {what}; the dataset holds "
    f"{sorted(map(str, ds.data_vars))}",
    ", ".join(missing) or None,
  )


def with_defaults(df: pd.DataFrame, applied: Sequence[str]) -> pd.DataFrame:
  """`df` with the criteria columns, where it lacks them: `applied` all met, none skipped."""
  if set(CRITERIA_COLUMNS) <= set(df.columns):
    return df
  return df.assign(**columns(len(df), applied, []))


def summary(labels: pd.DataFrame) -> dict[str, dict]:
  """Per class of `labels` (a `class_name` column): how many labels, how many reduced, and why.

  `{"TC": {"labels": 40, "reduced": 12, "skipped": {"thickness": 12}}, ...}`;
  a table without the criteria columns counts as on full criteria.
  """
  out = {}
  if "class_name" not in labels.columns:
    return out
  for name, rows in labels.groupby("class_name", sort=False):
    reduced = rows["reduced"].to_numpy(bool) if "reduced" in rows.columns else np.zeros(len(rows))
    skipped: dict[str, int] = {}
    if "criteria_skipped" in rows.columns:
      for cell in rows["criteria_skipped"]:
        for criterion in names_of(cell):
          skipped[criterion] = skipped.get(criterion, 0) + 1
    out[str(name)] = {"labels": len(rows), "reduced": int(reduced.sum()), "skipped": skipped}
  return out


def describe(counts: dict[str, dict]) -> str:
  """`summary` as one line: 'TC 12 of 40 (thickness skipped), AR 0 of 7'."""
  parts = []
  for name, c in counts.items():
    why = ", ".join(f"{k} skipped" for k in c["skipped"]) if c["reduced"] else ""
    parts.append(f"{name} {c['reduced']} of {c['labels']}" + (f" ({why})" if why else ""))
  return ", ".join(parts) if parts else "no labels"
