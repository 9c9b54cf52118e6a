"""The Colab notebooks run top to bottom against the library (in-process, tiny configs)."""

import glob
import os

import matplotlib
import nbformat
import pytest

matplotlib.use("Agg")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "colab", "*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, monkeypatch):
  monkeypatch.chdir(os.path.dirname(path))
  namespace = {"__name__": "__notebook__"}
  for cell in nbformat.read(path, as_version=4).cells:
    if cell.cell_type == "code":
      exec(compile(cell.source, path, "exec"), namespace)  # noqa: S102
