"""The exception for unusable config values and workdirs (JAX-free, importable anywhere).

`launch/main.py` prints a `ConfigError` as one line (exit status 2); the message
names the config field or the flag to change.
"""

from __future__ import annotations


class ConfigError(ValueError):
  """A config value or the workdir is unusable; the message names the field."""


class Interrupted(RuntimeError):
  """The run was asked to stop (SIGTERM) and saved a checkpoint first; the message says where.

  `launch/main.py` prints it as one line and exits 143 (128 + SIGTERM), as a
  process killed by SIGTERM would.
  """
