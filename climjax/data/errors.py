"""The one exception every data reader raises for bad input files.

A `DataError` names the file, the variable (where there is one) and what was
expected, on one line, so the launcher can print it as it is and a user knows
which file to fix without reading a traceback.
"""

from __future__ import annotations

import os


class DataError(ValueError):
  """A data file is missing, unreadable or not what a reader expects.

  `str(error)` is one line: ``"<path>: variable <name>: <message>"`` (the
  variable part only where one is concerned). The parts stay available as
  `path`, `variable` and `message`.
  """

  def __init__(self, path: str | os.PathLike, message: str, variable: str | None = None):
    self.path = os.fspath(path)
    self.variable = variable
    # One line whatever the message: wrapped library errors may span several.
    self.message = " ".join(str(message).split())
    where = self.path if variable is None else f"{self.path}: variable {variable}"
    super().__init__(f"{where}: {self.message}")

  def __reduce__(self):
    # Rebuild from the parts, not from `args` (one formatted string), so the error
    # survives pickling across worker processes.
    return (type(self), (self.path, self.message, self.variable))
