"""The exception for unusable config values and workdirs (JAX-free, importable anywhere).

`launch/main.py` prints a `ConfigError` as one line (exit status 2); the message
names the config field or the flag to change.
"""

from __future__ import annotations


class ConfigError(ValueError):
  """A config value or the workdir is unusable; the message names the field."""
