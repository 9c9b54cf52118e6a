"""The climatology of detected events, and how it differs between two runs.

From `detections.nc` files (`events.write_detections`), per class: event
counts per month and per year, track counts and mean lifetime, the latitude
distribution, and frequency maps on the input grid (detections per year whose
box covers a grid cell's centre). Two runs (say historical and future) are
compared by the ratio of their event rates and a two-sided permutation test of
the per-period event rates (events per day in each period): across years where
both runs hold at least `min_periods` of them, else across months, else
across 5-day blocks (pentads) from the run's start. Periods covered less than
half by the run's snapshots are left out of the test. `compare_runs` writes
the tables, `frequency.nc` and the figures (`plot_climatology`).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence

import cftime
import numpy as np
import pandas as pd

from climjax.evaluation import events, tracking

PERIODS = ("year", "month", "pentad")
_DAYS_PER_YEAR = {"noleap": 365.0, "365_day": 365.0, "all_leap": 366.0, "366_day": 366.0,
                  "360_day": 360.0, "julian": 365.25}  # fmt: skip


def days_per_year(calendar: str) -> float:
  """Mean length of a year on a CF calendar (Gregorian for standard / gregorian)."""
  return _DAYS_PER_YEAR.get(calendar.lower(), 365.2425)


def _days(dets: events.Detections) -> np.ndarray:
  return dets.times * tracking.days_per_time_unit(dets.time_units)


def snapshot_days(dets: events.Detections) -> float:
  """The time one snapshot stands for (median spacing, days; 1 for a single snapshot)."""
  return float(np.median(np.diff(_days(dets)))) if len(dets.times) > 1 else 1.0


def run_years(dets: events.Detections) -> float:
  """Years the run covers: snapshots times their spacing, in years of its calendar."""
  return len(dets.times) * snapshot_days(dets) / days_per_year(dets.calendar)


def _period_days(key, period: str, calendar: str) -> float:
  if period == "pentad":
    return 5.0
  year, month = (key, 1) if period == "year" else key
  start = cftime.datetime(year, month, 1, calendar=calendar)
  end = (
    cftime.datetime(year + 1, 1, 1, calendar=calendar)
    if period == "year" or month == 12
    else cftime.datetime(year, month + 1, 1, calendar=calendar)
  )
  return (end - start).total_seconds() / 86400


def period_table(dets: events.Detections, period: str) -> pd.DataFrame:
  """One row per period the run touches: period, snapshots, coverage, count per class.

  `coverage` is the fraction of the period the snapshots stand for; `<class>`
  columns count detections; periods without detections appear with zeros.
  """
  if period not in PERIODS:
    raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
  dates = dets.dates()
  if period == "year":
    keys = [d.year for d in dates]
  elif period == "month":
    keys = [(d.year, d.month) for d in dates]
  else:
    keys = list(((_days(dets) - _days(dets)[0]) // 5).astype(int))
  codes, unique = pd.factorize(pd.Series(keys, dtype=object), sort=True)
  step = snapshot_days(dets)
  table = pd.DataFrame({
    "period": [str(k) if period != "month" else f"{k[0]:04d}-{k[1]:02d}" for k in unique],
    "snapshots": np.bincount(codes, minlength=len(unique)),
  })  # fmt: skip
  period_days = np.array([_period_days(k, period, dets.calendar) for k in unique])
  table["coverage"] = np.minimum(table["snapshots"] * step / period_days, 1.0)
  if period == "month":
    table["year"] = [k[0] for k in unique]
    table["month"] = [k[1] for k in unique]
  for c, name in enumerate(dets.class_names):
    where = codes[dets.snapshot[dets.class_id == c]]
    table[name] = np.bincount(where, minlength=len(unique))
  return table


def permutation_test(
  a: Sequence[float], b: Sequence[float], *, num_permutations: int = 10_000, seed: int = 0
) -> float:
  """Two-sided p-value for a difference in means between samples `a` and `b`.

  Exact (every split of the pooled values) when there are at most 20,000
  splits, else `num_permutations` random ones (p = (k + 1) / (n + 1)).
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  pooled, n = np.concatenate([a, b]), len(a)
  if n == 0 or len(b) == 0:
    return float("nan")
  observed = abs(b.mean() - a.mean())
  total = pooled.sum()
  if math.comb(len(pooled), n) <= 20_000:
    sums = np.array([pooled[list(c)].sum() for c in itertools.combinations(range(len(pooled)), n)])
    diffs = np.abs((total - sums) / len(b) - sums / n)
    return float(np.mean(diffs >= observed - 1e-12))
  rng = np.random.default_rng(seed)
  sums = np.array([pooled[rng.permutation(len(pooled))[:n]].sum() for _ in range(num_permutations)])
  diffs = np.abs((total - sums) / len(b) - sums / n)
  return float((np.sum(diffs >= observed - 1e-12) + 1) / (num_permutations + 1))


def choose_period(runs: Sequence[events.Detections], min_periods: int = 5) -> str:
  """The longest period of which every run holds `min_periods` (half-covered or more)."""
  for period in PERIODS:
    if all((period_table(d, period)["coverage"] >= 0.5).sum() >= min_periods for d in runs):
      return period
  return PERIODS[-1]


def period_rates(table: pd.DataFrame, class_name: str, step_days: float) -> np.ndarray:
  """Events per day of `class_name` in each period of a `period_table` covered at least half."""
  table = table[table["coverage"] >= 0.5]
  return (table[class_name] / (table["snapshots"] * step_days)).to_numpy()


def _nearest(sorted_centres: np.ndarray, values: np.ndarray, period: float | None) -> np.ndarray:
  """Index of the nearest centre (circular with `period`), or -1 beyond half a cell outside."""
  n = len(sorted_centres)
  spacing = float(np.median(np.diff(sorted_centres))) if n > 1 else 1.0
  hi = np.clip(np.searchsorted(sorted_centres, values), 0, n - 1)
  lo = np.clip(hi - 1, 0, n - 1)
  candidates = np.stack([lo, hi, np.zeros_like(hi), np.full_like(hi, n - 1)])
  d = np.abs(sorted_centres[candidates] - values)
  if period is not None:
    d = np.minimum(d, period - d)
  best = candidates[np.argmin(d, axis=0), np.arange(len(values))]
  return np.where(d.min(axis=0) <= 0.5 * spacing + 1e-9, best, -1)


def box_cell_counts(dets: events.Detections, class_id: int) -> np.ndarray:
  """(lat, lon) number of `class_id` boxes covering each cell centre of the input grid.

  A box smaller than a cell counts the cell holding its centre. Longitudes
  wrap at 0/360. Uses a 2-D difference array: O(detections + cells).
  """
  lat_order, lon_order = np.argsort(dets.lats), np.argsort(np.mod(dets.lons, 360.0))
  slat, slon = dets.lats[lat_order], np.mod(dets.lons, 360.0)[lon_order]
  nlat, nlon = len(slat), len(slon)
  pick = dets.class_id == class_id
  lat0, lat1, lat_c = dets.lat_min[pick], dets.lat_max[pick], dets.lat[pick]
  lon0 = np.mod(dets.lon_min[pick], 360.0)
  width = dets.lon_max[pick] - dets.lon_min[pick]
  i0, i1 = np.searchsorted(slat, lat0, "left"), np.searchsorted(slat, lat1, "right")
  ext = np.concatenate([slon, slon + 360.0])
  j0, j1 = np.searchsorted(ext, lon0, "left"), np.searchsorted(ext, lon0 + width, "right")
  j0, j1 = np.where(width >= 360, 0, j0), np.where(width >= 360, nlon, j1)
  ic = _nearest(slat, lat_c, None)
  jc = _nearest(slon, np.mod(dets.lon[pick], 360.0), 360.0)
  small_i, small_j = i1 <= i0, j1 <= j0
  i0, i1 = np.where(small_i, ic, i0), np.where(small_i, ic + 1, i1)
  j0, j1 = np.where(small_j, jc, j0), np.where(small_j, jc + 1, j1)
  valid = (i0 >= 0) & (j0 >= 0)
  diff = np.zeros((nlat + 1, nlon + 1))
  wrapped = j1 > nlon
  pieces = [(j0, np.minimum(j1, nlon)), (np.zeros_like(j0), np.minimum(j1 - nlon, j0))]
  for (a, b), use in zip(pieces, [valid, valid & wrapped], strict=True):
    keep = use & (b > a)
    for rows, cols, sign in ((i0, a, 1), (i0, b, -1), (i1, a, -1), (i1, b, 1)):
      np.add.at(diff, (rows[keep], cols[keep]), sign)
  counts = diff.cumsum(0).cumsum(1)[:nlat, :nlon]
  out = np.empty_like(counts)
  out[np.ix_(lat_order, lon_order)] = counts
  return out


def track_table(run_dir: str, dets: events.Detections) -> pd.DataFrame:
  """Per track: class and lifetime (days), from `tracks.nc` if the run has one, else tracked now."""
  if os.path.exists(os.path.join(run_dir, "tracks.nc")):
    tracks = events.read_tracks(run_dir)
    return pd.DataFrame({"class_id": tracks.class_id, "lifetime": tracks.lifetime})
  ids = tracking.link_tracks(
    dets.columns(), times=dets.times, time_units=dets.time_units, class_names=dets.class_names
  )
  track_ids, lifetime = tracking.lifetimes_days(
    dets.snapshot, ids, times=dets.times, time_units=dets.time_units
  )
  classes = np.zeros(len(track_ids), np.int64)
  classes[np.searchsorted(track_ids, ids[ids >= 0])] = dets.class_id[ids >= 0]
  return pd.DataFrame({"class_id": classes, "lifetime": lifetime})


def latitude_table(dets: events.Detections, name: str, bin_deg: float = 5.0) -> pd.DataFrame:
  """Detections per year per latitude band of `bin_deg`, for every class."""
  edges = np.arange(-90.0, 90.0 + bin_deg / 2, bin_deg)
  years = run_years(dets)
  rows = []
  for c, class_name in enumerate(dets.class_names):
    counts, _ = np.histogram(dets.lat[dets.class_id == c], bins=edges)
    rows.append(pd.DataFrame({"run": name, "class": class_name, "lat_lo": edges[:-1],
                              "lat_hi": edges[1:], "events_per_year": counts / years}))  # fmt: skip
  return pd.concat(rows, ignore_index=True)


def _label(name: str) -> str:
  return "".join(ch if ch.isalnum() else "_" for ch in name)


def summary_table(
  runs: Sequence[events.Detections],
  tracks: Sequence[pd.DataFrame],
  names: Sequence[str],
  *,
  min_periods: int = 5,
  num_permutations: int = 10_000,
  seed: int = 0,
) -> pd.DataFrame:
  """Per class: counts, events per year and tracks of each run; for two runs, ratio and p-value.

  ratio is B's events per year over A's; p_value is the permutation test of
  the per-period rates, periods as `choose_period` picks (column test_period).
  """
  period = choose_period(runs, min_periods) if len(runs) == 2 else None
  tables = [period_table(d, period) for d in runs] if period else []
  rows = []
  for c, class_name in enumerate(runs[0].class_names):
    row = {"class": class_name}
    for dets, track, name in zip(runs, tracks, names, strict=True):
      n = _label(name)
      count = int(np.sum(dets.class_id == c))
      lifetimes = track["lifetime"][track["class_id"] == c]
      row[f"count_{n}"] = count
      row[f"events_per_year_{n}"] = count / run_years(dets)
      row[f"tracks_{n}"] = len(lifetimes)
      row[f"mean_lifetime_days_{n}"] = float(lifetimes.mean()) if len(lifetimes) else float("nan")
    if period is not None:
      a, b = (_label(n) for n in names)
      rate_a, rate_b = row[f"events_per_year_{a}"], row[f"events_per_year_{b}"]
      row["ratio"] = rate_b / rate_a if rate_a > 0 else (float("inf") if rate_b > 0 else np.nan)
      ra, rb = (
        period_rates(t, class_name, snapshot_days(d)) for t, d in zip(tables, runs, strict=True)
      )
      row["p_value"] = permutation_test(ra, rb, num_permutations=num_permutations, seed=seed)
      row["test_period"] = period
      row[f"periods_{a}"], row[f"periods_{b}"] = len(ra), len(rb)
    rows.append(row)
  return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame, names: Sequence[str]) -> str:
  def cell(v):
    if isinstance(v, float) and np.isfinite(v) and abs(v) >= 100:
      return f"{v:.0f}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)

  lines = [
    f"# Event climatology: {' vs '.join(names)}",
    "",
    "| " + " | ".join(table.columns) + " |",
    "|" + "---|" * len(table.columns),
  ]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
  if "test_period" in table:
    lines += ["", f"p_value: two-sided permutation test of per-{table['test_period'][0]} event "
              "rates (events per day; periods covered less than half left out); ratio: events "
              "per year of the second run over the first."]  # fmt: skip
  return "\n".join(lines) + "\n"


def frequency_dataset(runs: Sequence[events.Detections], names: Sequence[str]):
  """xarray Dataset of detections per year covering each cell, per run and class (+ B - A)."""
  import xarray as xr

  first = runs[0]
  same_grid = all(
    d.lats.shape == first.lats.shape and d.lons.shape == first.lons.shape
    and np.allclose(d.lats, first.lats) and np.allclose(d.lons, first.lons)
    for d in runs
  )  # fmt: skip
  if not same_grid:
    raise ValueError(f"runs {list(names)} are on different grids: no common frequency map")
  freq = np.stack([
    np.stack([box_cell_counts(d, c) for c in range(len(d.class_names))]) / run_years(d)
    for d in runs
  ]).astype(np.float32)  # fmt: skip
  attrs = {"units": "year-1", "long_name": "detections per year whose box covers the cell centre"}
  ds = xr.Dataset(
    {"frequency": (("run", "event_class", "lat", "lon"), freq, attrs),
     "years": (("run",), np.array([run_years(d) for d in runs]), {"units": "year"})},
    coords={
      "run": list(names), "event_class": list(first.class_names),
      "lat": ("lat", first.lats, {"units": "degrees_north", "standard_name": "latitude"}),
      "lon": ("lon", first.lons, {"units": "degrees_east", "standard_name": "longitude"}),
    },
    attrs={"Conventions": "CF-1.8", "title": "climjax event frequency"},
  )  # fmt: skip
  if len(runs) == 2:
    ds["difference"] = (("event_class", "lat", "lon"), freq[1] - freq[0],
                        {"units": "year-1", "long_name": f"frequency {names[1]} minus {names[0]}"})  # fmt: skip
  return ds


def compare_runs(
  run_dirs: Sequence[str],
  out_dir: str,
  *,
  names: Sequence[str] | None = None,
  min_periods: int = 5,
  num_permutations: int = 10_000,
  seed: int = 0,
) -> tuple[pd.DataFrame, dict[str, str]]:
  """Writes the climatology of one run, or of two and their difference, into `out_dir`.

  Files: summary.csv / summary.md (`summary_table`), counts_monthly.csv,
  counts_yearly.csv, latitude.csv, frequency.nc (`frequency_dataset`) and the
  PNG figures of `plot_climatology`. Returns the summary and the paths.
  """
  if not 1 <= len(run_dirs) <= 2:
    raise ValueError(f"compare_runs takes one or two runs, got {len(run_dirs)}")
  runs = [events.read_detections(r) for r in run_dirs]
  if names is None:
    names = [os.path.basename(os.path.normpath(r)) or r for r in run_dirs]
    names = names if len(set(names)) == len(names) else ["A", "B"][: len(names)]
  if len(runs) == 2 and runs[0].class_names != runs[1].class_names:
    raise ValueError(f"runs have different classes: {runs[0].class_names} vs {runs[1].class_names}")
  tracks = [track_table(os.path.dirname(d.path), d) for d in runs]
  summary = summary_table(runs, tracks, names, min_periods=min_periods,
                          num_permutations=num_permutations, seed=seed)  # fmt: skip
  os.makedirs(out_dir, exist_ok=True)
  paths = {}

  def save(name, write):
    paths[name] = os.path.join(out_dir, name)
    events._atomic(paths[name], write)

  save("summary.csv", lambda p: summary.to_csv(p, index=False, float_format="%.6g"))

  def write_text(path, text):
    with open(path, "w") as f:
      f.write(text)

  save("summary.md", lambda p: write_text(p, _markdown(summary, names)))
  for period, file in (("month", "counts_monthly.csv"), ("year", "counts_yearly.csv")):
    table = pd.concat(
      [period_table(d, period).assign(run=n) for d, n in zip(runs, names, strict=True)]
    )
    save(file, lambda p, t=table: t.to_csv(p, index=False, float_format="%.6g"))
  lat_table = pd.concat([latitude_table(d, n) for d, n in zip(runs, names, strict=True)])
  save("latitude.csv", lambda p: lat_table.to_csv(p, index=False, float_format="%.6g"))
  freq = frequency_dataset(runs, names)
  save("frequency.nc", lambda p: freq.to_netcdf(p, engine="netcdf4"))
  paths.update(plot_climatology(runs, names, freq, lat_table, out_dir, summary))
  return summary, paths


# ---- Figures ----------------------------------------------------------------


def _classes_with_events(runs: Sequence[events.Detections]) -> list[int]:
  found = sorted({int(c) for d in runs for c in np.unique(d.class_id)})
  return found or list(range(len(runs[0].class_names)))


def _monthly_cycle(dets: events.Detections, class_name: str) -> np.ndarray:
  """Mean events per (full) calendar month, months covered less than half left out (NaN)."""
  table = period_table(dets, "month")
  table = table[table["coverage"] >= 0.5]
  per_month = table[class_name] / table["coverage"]
  return np.array([per_month[table["month"] == m].mean() for m in range(1, 13)])


def plot_climatology(
  runs, names, freq, lat_table: pd.DataFrame, out_dir: str, summary: pd.DataFrame | None = None
) -> dict[str, str]:
  """counts_per_month.png, latitude.png and map_<class>.png (each run, and B - A) in `out_dir`.

  With a two-run `summary`, each class's panels are titled with the ratio and p-value.
  """
  from climjax import plots

  plt = plots.plt
  classes = _classes_with_events(runs)
  colours = ("#1f77b4", "#d62728")
  paths = {}
  titles = {name: name for name in runs[0].class_names}
  if summary is not None and "p_value" in summary:
    for row in summary.itertuples():
      titles[row[1]] = (
        f"{row[1]}: ratio {row.ratio:.2f}, p = {row.p_value:.2g} ({row.test_period}s)"
      )
  fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 3.2), squeeze=False)
  width = 0.8 / len(runs)
  for ax, c in zip(axes[0], classes, strict=True):
    name = runs[0].class_names[c]
    for k, (dets, run) in enumerate(zip(runs, names, strict=True)):
      x = np.arange(1, 13) + (k - (len(runs) - 1) / 2) * width
      ax.bar(x, _monthly_cycle(dets, name), width, label=run, color=colours[k % 2])
    ax.set_xticks(range(1, 13), list("JFMAMJJASOND"))
    ax.set_title(titles[name], fontsize=9)
    ax.set_ylabel("detections per month")
  handles, labels = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="upper center", ncol=len(runs), fontsize=8, frameon=False)
  fig.tight_layout(rect=(0, 0, 1, 0.92))
  paths["counts_per_month.png"] = plots._save(fig, os.path.join(out_dir, "counts_per_month.png"))

  fig, axes = plt.subplots(1, len(classes), figsize=(4.2 * len(classes), 3.2), squeeze=False)
  for ax, c in zip(axes[0], classes, strict=True):
    name = runs[0].class_names[c]
    for k, run in enumerate(names):
      rows = lat_table[(lat_table["run"] == run) & (lat_table["class"] == name)]
      ax.stairs(rows["events_per_year"], np.r_[rows["lat_lo"], rows["lat_hi"].iloc[-1]],
                label=run, color=colours[k % 2], lw=1.5)  # fmt: skip
    ax.set_xlabel("latitude (°N)")
    ax.set_ylabel("detections per year per 5°")
    ax.set_xlim(-90, 90)
    ax.set_title(titles[name], fontsize=9)
  axes[0, 0].legend(fontsize=8)
  fig.tight_layout()
  paths["latitude.png"] = plots._save(fig, os.path.join(out_dir, "latitude.png"))

  lats, lons = freq["lat"].values, freq["lon"].values
  land = plots._land_fraction(lats, lons)
  panels = [*names, f"{names[1]} − {names[0]}"] if "difference" in freq else list(names)
  aspect = len(lons) / max(len(lats), 1)
  for c in classes:
    name = runs[0].class_names[c]
    fields = [freq["frequency"].values[k, c] for k in range(len(names))]
    if "difference" in freq:
      fields.append(freq["difference"].values[c])
    top = max(float(np.nanmax(f)) for f in fields[: len(names)]) or 1.0
    fig, axes = plt.subplots(len(panels), 1, figsize=(min(12.0, 3.2 * aspect + 1.8),
                                                      2.9 * len(panels)), squeeze=False)  # fmt: skip
    for k, (ax, field, title) in enumerate(zip(axes[:, 0], fields, panels, strict=True)):
      if k < len(names):
        mesh = plots._image(ax, field, lats, lons, cmap="viridis", vmin=0, vmax=top)
      else:
        span = float(np.nanmax(np.abs(field))) or 1.0
        mesh = plots._image(ax, field, lats, lons, cmap="RdBu_r", vmin=-span, vmax=span)
      fig.colorbar(mesh, ax=ax, fraction=0.03, pad=0.02, label="detections / year")
      if land is not None and np.nanmin(land) < 0.5 < np.nanmax(land):
        ax.contour(lons, lats, land, levels=[0.5], colors="k", linewidths=0.6)
      ax.set_title(f"{titles[name] if k == len(names) else name} frequency: {title}", fontsize=9)
      ax.set_ylabel("latitude (°N)")
    axes[-1, 0].set_xlabel("longitude (°E)")
    fig.tight_layout()
    file = f"map_{_label(name)}.png"
    paths[file] = plots._save(fig, os.path.join(out_dir, file))
  return paths
