"""Where a result came from: code version, commit, packages, machine, peak memory.

`provenance()` is written into summary.json, predictions.nc, detections.nc and
tracks.nc, so a number can be traced to the code and machine that made it.
No JAX import: the versions are read from the installed distributions.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import resource
import subprocess

import climjax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "xarray", "netCDF4")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def git_commit() -> str:
  """The checkout's commit ("+dirty" with uncommitted changes), or "unknown"."""
  try:
    commit = subprocess.run(
      ["git", "-C", _REPO, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "-C", _REPO, "status", "--porcelain", "--untracked-files=no"],
      capture_output=True, text=True, timeout=10,
    ).stdout.strip()  # fmt: skip
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def peak_rss_mb() -> float:
  """This process's peak resident memory so far (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def provenance() -> dict:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {
    "climjax_version": climjax.__version__,
    "git_commit": git_commit(),
    "python": platform.python_version(),
    "packages": versions,
    "cpu": cpu_model(),
    "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    "host": platform.node(),
    "peak_rss_mb": peak_rss_mb(),
  }


def netcdf_attrs(**extra) -> dict:
  """The provenance as netCDF global attributes (strings and numbers only)."""
  import json  # noqa: PLC0415

  info = provenance()
  attrs = {k: v for k, v in info.items() if isinstance(v, str | int | float)}
  attrs["packages"] = json.dumps(info["packages"], sort_keys=True)
  attrs.update(
    {k: v if isinstance(v, str | int | float) else json.dumps(v) for k, v in extra.items()}
  )
  return attrs
