"""Trains and evaluates one climjax experiment: the only place that defines flags.

  python launch/main.py --config=configs/tc.py [--workdir=runs/tc] [--config.train.steps=100]

Configs (the argument after the colon picks the size: none = the embedded demo,
`:tiny` = seconds, for tests, `:paper` = the published size):

  configs/tc.py, ar.py, wf.py   TC / AR / weather-front patch classifiers (Liu et al. 2016)
  configs/semisup.py            the semi-supervised detector, all classes (Racah et al. 2017)
  configs/semisup_labels.py     its labelled-fraction x reconstruction-loss grid (launch/grid.py)
  configs/discovery.py          one class's labels withheld, its encoder probed (launch/discover.py)

Fields that scripts rely on: train.steps, train.batch_size (global), train.checkpoint_every,
train.eval_every, data.source (synthetic | netcdf | extremeweather), data.input,
model.conv_impl, platform.threads, parallel.strategy (single | sync | hybrid | simulated),
parallel.num_groups, parallel.num_servers, parallel.scaling (strong | weak),
parallel.gradient_lag. Under MPI: bash launch/mpirun.sh N --config=... (see README).

Platform settings (XLA flags, threads, allocator) are applied from the config
before JAX is imported; then the one training loop runs the task the config
names (`config.task`) with its strategy (`config.parallel.strategy`). A bad config
value, an unwritable workdir or bad input data ends with one line naming the
field or file (exit status 2), not a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys

# configs/ lives beside climjax/ at the repository root, not inside the package.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from climjax import platform  # noqa: E402  (imports no JAX)

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Output directory (default: runs/<config name>, plus the strategy and ranks)."
)
_RESUME = flags.DEFINE_enum(
  "resume", "auto", ["auto", "force"],
  "auto: continue a run in --workdir only if its config.json differs in train.steps alone; "
  "force: continue it whatever changed.",
)  # fmt: skip


def _mpi_env(names: tuple[str, ...], default: str) -> str:
  return next((os.environ[v] for v in names if v in os.environ), default)


def _is_rank0() -> bool:
  return _mpi_env(("PMI_RANK", "OMPI_COMM_WORLD_RANK"), "0") == "0"


def _fail(message: str, status: int = 2) -> None:
  # Under MPI every rank checks the same config and fails the same way: rank 0 says so once.
  # Every rank also leaves its line for launch/mpirun.sh, which shows another rank's
  # when rank 0 had none (an error of that rank alone).
  rank = _mpi_env(("PMI_RANK", "OMPI_COMM_WORLD_RANK"), "0")
  if os.environ.get("CLIMJAX_RANKS_DIR"):
    with contextlib.suppress(OSError):
      with open(os.path.join(os.environ["CLIMJAX_RANKS_DIR"], f"error-{rank}"), "w") as f:
        f.write(message)
  if rank == "0":
    print(f"climjax: error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with one line instead of a traceback for a bad flag.

  A mistyped config field (--config.train.bach_size=4) raises inside
  ml_collections while the override is applied; a value of the wrong type is
  an absl flags error. Both name the flag and, where ml_collections has one,
  the field meant.
  """
  if any(a in ("-h", "--help", "--helpshort", "-?") for a in argv[1:]):
    app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)  # the docstring (configs, fields) and the flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).replace("\n", " "))
  except (AttributeError, KeyError) as e:
    text = str(e)
    meant = re.search(r'did you mean "(\w+)" instead of "(\w+)"', text, re.IGNORECASE)
    named = re.search(r"[A-Za-z_]\w*", text)
    key = meant.group(2) if meant else (named.group(0) if named else text)
    given = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.") and key in a]
    where = given[0] if given else "a --config override"
    hint = f'; did you mean "{meant.group(1)}"?' if meant else ""
    _fail(f"{where}: the config has no field {key!r}{hint}")
  return argv


def default_workdir(config) -> str:
  """runs/<config name>, with the strategy and MPI ranks when not one process (runs/tc-sync2,
  runs/tc-hybrid3-g2s1), so that runs of one config under different layouts never share
  checkpoints."""
  name = config.get("name", "run")
  parallel = config.get("parallel", {})
  strategy = parallel.get("strategy", "single")
  if strategy == "single":
    return os.path.join("runs", name)
  ranks = _mpi_env(("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"), "")
  suffix = f"-{strategy}{ranks}"
  if strategy in ("hybrid", "simulated"):
    suffix += f"-g{parallel.get('num_groups', 1)}"
  if strategy == "hybrid":
    suffix += f"s{parallel.get('num_servers', 0)}"
  if parallel.get("gradient_lag", 0):
    suffix += "-lag"
  return os.path.join("runs", name + suffix)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if os.environ.get("CLIMJAX_RANKS_DIR"):  # launch/mpirun.sh names a rank that dies by its pid
    with contextlib.suppress(OSError):
      with open(os.path.join(os.environ["CLIMJAX_RANKS_DIR"], str(os.getpid())), "w") as f:
        f.write(_mpi_env(("PMI_RANK", "OMPI_COMM_WORLD_RANK"), "0"))
  # Library INFO logs (orbax, tfds) drown the progress lines; --verbosity=0 brings them back.
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  if config is None:
    _fail("--config is required, e.g. --config=configs/tc.py")
  workdir = _WORKDIR.value or default_workdir(config)
  try:
    # orig_argv keeps interpreter options such as `-m mpi4py`, so the re-executed
    # process (tcmalloc preload) still aborts every rank when one fails.
    platform_info = platform.apply(config.platform, argv=sys.orig_argv[1:])
  except ValueError as e:
    _fail(str(e))
  from climjax.data.errors import DataError  # noqa: PLC0415
  from climjax.errors import Interrupted  # noqa: PLC0415
  from climjax.training import train  # noqa: PLC0415  (imports JAX: after platform.apply)
  from climjax.training.validate import ConfigError  # noqa: PLC0415

  if _is_rank0():
    print(f"[climjax] platform: {platform_info}")
  try:
    train.train_and_evaluate(config, workdir, resume=_RESUME.value)
  except (ConfigError, DataError) as e:
    _fail(str(e))
  except FloatingPointError as e:  # a non-finite loss or parameters: nothing bad was saved
    saved = os.path.join(workdir, "checkpoints")
    steps = sorted(int(d) for d in os.listdir(saved) if d.isdigit()) if os.path.isdir(saved) else []
    kept = f"the last good checkpoint (step {steps[-1]}) is kept" if steps else "no checkpoint"
    _fail(f"{e}; training stopped, {kept} in {saved}", status=3)
  except Interrupted as e:  # SIGTERM: the checkpoint is saved; 143 as for a process it killed
    _fail(str(e), status=143)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
