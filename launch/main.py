"""Trains and evaluates one climjax experiment: the only place that defines flags.

  python launch/main.py --config=configs/tc.py [--workdir=runs/tc] [--config.train.steps=100]

Platform settings (XLA flags, threads, allocator) are applied from the config
before JAX is imported; then the one training loop runs the task the config
names (`config.task`) with its strategy (`config.parallel.strategy`). A bad config
value, an unwritable workdir or bad input data ends with one line naming the
field or file (exit status 2), not a traceback.
"""

from __future__ import annotations

import os
import sys

# configs/ lives beside climjax/ at the repository root, not inside the package.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from climjax import platform  # noqa: E402  (imports no JAX)

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (default: runs/<config name>).")

def _fail(message: str) -> None:
  print(f"climjax: error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  # Library INFO logs (orbax, tfds) drown the progress lines; --verbosity=0 brings them back.
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  if config is None:
    _fail("--config is required, e.g. --config=configs/tc.py")
  workdir = _WORKDIR.value or os.path.join("runs", config.get("name", "run"))
  try:
    # orig_argv keeps interpreter options such as `-m mpi4py`, so the re-executed
    # process (tcmalloc preload) still aborts every rank when one fails.
    platform_info = platform.apply(config.platform, argv=sys.orig_argv[1:])
  except ValueError as e:
    _fail(str(e))
  from climjax.data.errors import DataError  # noqa: PLC0415
  from climjax.training import train  # noqa: PLC0415  (imports JAX: after platform.apply)
  from climjax.training.validate import ConfigError  # noqa: PLC0415

  print(f"[climjax] platform: {platform_info}")
  try:
    train.train_and_evaluate(config, workdir)
  except (ConfigError, DataError) as e:
    _fail(str(e))


if __name__ == "__main__":
  app.run(main)
