"""The colab/ notebooks run top to bottom in a kernel (fast mode) and draw their figures.

Each notebook is executed headless with nbclient from a scratch working
directory, with CLIMJAX_NOTEBOOK_FAST=1 (tiny sizes) and its FIGURES_DIR /
WORK_DIR pointed into tmp_path; the test then checks that every figure the
notebook promises was written and is a real picture, not only that no cell
failed. The helpers of climjax/notebook_plots.py are tested on small arrays.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil

import matplotlib
import matplotlib.image
import nbformat
import numpy as np
import pytest

matplotlib.use("Agg")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "colab", "*.ipynb")))
HAVE_MPI = (
  os.path.exists(os.path.join(REPO, ".venv", "bin", "mpiexec")) or shutil.which("mpiexec")
) and all(importlib.util.find_spec(m) for m in ("mpi4py", "mpi4jax"))

# The figures each notebook writes in fast mode (frequency_<class>.png: at least one class).
FIGURES = {
  "01_data_tour": ("fields.png", "heuristics_vs_truth.png", "heuristic_counts.png",
                   "reopened_netcdf.png"),
  "02_tc_classifier": ("patches.png", "learning_curves.png", "confusion_matrix.png",
                       "misclassified.png", "baselines.png"),
  "03_semisupervised_detection": ("learning_curves.png", "reconstruction.png", "detections_0.png",
                                  "ap_per_class.png", "labelled_fraction.png"),
  "04_scaling": ("throughput.png", "time_split.png", "sweep_speedup.png", "sweep_time_split.png",
                 "model_scaling.png"),
  "05_apply_detector": ("detections_map.png", "tracks.png", "latitude.png",
                        "counts_per_month.png", "frequency_*.png"),
}  # fmt: skip


def _name(path: str) -> str:
  return os.path.basename(path)[: -len(".ipynb")]


def _check_png(path: str) -> None:
  """A PNG of real size whose pixels are not all one colour."""
  image = matplotlib.image.imread(path)
  assert image.shape[0] >= 200 and image.shape[1] >= 300, (path, image.shape)
  assert os.path.getsize(path) > 5_000, (path, os.path.getsize(path))
  assert float(np.std(image[..., :3])) > 0.02, f"{path}: a blank picture"


def test_every_notebook_is_listed_and_committed_without_outputs():
  assert sorted(_name(p) for p in NOTEBOOKS) == sorted(FIGURES)
  for path in NOTEBOOKS:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path} has outputs"
    setup = code[0].source
    assert 'os.environ.get("CLIMJAX_REPO"' in setup and "pip" in setup and "import climjax" in setup
    params = code[1]
    assert "parameters" in params.metadata.get("tags", []), path
    assert "CLIMJAX_NOTEBOOK_FAST" in params.source and "FIGURES_DIR" in params.source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_name)
def test_notebook_runs_and_draws_its_figures(path, tmp_path, monkeypatch):
  from nbclient import NotebookClient

  name = _name(path)
  figures = tmp_path / "figures"
  work = tmp_path / "work"
  cwd = tmp_path / "elsewhere"  # not the repository: paths must not depend on it
  cwd.mkdir()
  monkeypatch.setenv("CLIMJAX_NOTEBOOK_FAST", "1")
  monkeypatch.setenv("CLIMJAX_FIGURES_DIR", str(figures))
  monkeypatch.setenv("CLIMJAX_WORK_DIR", str(work))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  # 04 shows "a full sweep's CSV" when one exists: its own tiny sweep's, for a deterministic test.
  monkeypatch.setenv("CLIMJAX_SCALING_CSV", str(work / name / "sweep_fast" / "scaling.csv"))
  monkeypatch.delenv("CLIMJAX_DETECTOR_WORKDIR", raising=False)
  expected = list(FIGURES[name])
  if name == "04_scaling" and not HAVE_MPI:  # the in-process fallback runs no sweep
    expected = [f for f in expected if not f.startswith("sweep_")]
  nb = nbformat.read(path, as_version=4)
  client = NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(cwd)}})  # fmt: skip
  client.execute()
  for pattern in expected:
    found = sorted(glob.glob(str(figures / pattern)))
    assert found, f"{name} did not write {pattern}; it wrote {sorted(os.listdir(figures))}"
    for png in found:
      _check_png(png)


def test_notebook_plots_draw_from_small_inputs(tmp_path):
  """Every figure helper on tiny synthetic inputs: the PNG is written and is a picture."""
  import pandas as pd

  from climjax import notebook_plots as nbp
  from climjax.data import synthetic
  from climjax.parallel import scaling_model

  ds, events = synthetic.generate_fields(2, seed=0, nlat=48, nlon=72)
  lats, lons = ds.lat.values, ds.lon.values
  at0 = events[events.time_index == 0]
  boxes, labels = at0[["ymin", "xmin", "ymax", "xmax"]].to_numpy(), at0.class_id.to_numpy()
  patches, y = synthetic.tc_patches(3, seed=0)
  summary = {"ap@0.1": {"TD": 0.5, "TC": None}, "ap@0.5": {"TD": 0.2, "TC": None},
             "map@0.1": 0.5, "map@0.5": 0.2}  # fmt: skip
  rows = [
    {"labelled_fraction": f, "reconstruction_weight": w, "map@0.1": 0.1 * f + w / 100,
     "map@0.5": 0.05 * f, "reconstruction_mse": 1.0 if w == 0 else 0.2}
    for f in (1.0, 0.25) for w in (10.0, 0.0)
  ]  # fmt: skip
  run = {"examples_per_second": 1000.0, "compute_seconds": 0.01, "communication_seconds": 0.002,
         "wait_seconds": 0.001, "input_seconds": 0.0001, "step_seconds": 0.0131}  # fmt: skip
  scaling_rows = [nbp.scaling_row(run, name=f"sync_r{r}", ranks=r, strategy="sync") for r in (1, 2)]
  dets = {"class_id": np.array([1, 2]), "score": np.array([0.9, 0.2]),
          "lat_min": np.array([10.0, 40.0]), "lat_max": np.array([20.0, 50.0]),
          "lon_min": np.array([355.0, 100.0]), "lon_max": np.array([5.0, 120.0])}  # fmt: skip
  machine = scaling_model.CORI_KNL
  written = [
    nbp.plot_fields(ds, ["PSL", "TMQ", "PRECT"], tmp_path / "fields.png"),
    nbp.plot_box_panels(ds.TMQ.values[0], lats, lons, [("truth", boxes, labels)] * 2,
                        tmp_path / "boxes.png", field_name="TMQ", units="kg/m2"),
    nbp.plot_class_counts({"planted": {"TD": 3, "AR": 1}, "found": {"TD": 2}},
                          tmp_path / "counts.png"),
    nbp.plot_tc_patches(patches, [str(v) for v in y], tmp_path / "patches.png"),
    nbp.plot_tc_patches(patches[:0], [], tmp_path / "no_patches.png"),
    nbp.plot_confusion_matrix(np.array([[40, 3], [5, 52]]), ["no TC", "TC"], tmp_path / "cm.png"),
    nbp.plot_accuracies({"CNN": 0.97, "LR": 0.9}, tmp_path / "acc.png", highlight="CNN"),
    nbp.plot_ap_per_class(summary, tmp_path / "ap.png"),
    nbp.plot_labelled_fraction(rows, tmp_path / "fraction.png"),
    nbp.plot_throughput(scaling_rows, tmp_path / "throughput.png"),
    nbp.plot_model_scaling(scaling_model.CLIMATE_SC17, machine, [1, 2, 4, 8],
                           {"sync": {"strategy": "sync"},
                            "hybrid": {"strategy": "hybrid", "groups": 2, "servers": 1}},
                           tmp_path / "model.png"),
    nbp.plot_detections_degrees(ds.TMQ.values[0], lats, lons, dets, tmp_path / "dets.png",
                                truth=pd.DataFrame(at0), min_score=0.3, field_name="TMQ",
                                units="kg/m2"),
  ]  # fmt: skip
  for png in written:
    _check_png(png)
  assert scaling_rows[1]["comm_s"] == 0.002 and scaling_rows[1]["ranks"] == 2


def test_run_script_raises_with_the_end_of_the_output(tmp_path):
  from climjax import notebook_plots

  script = tmp_path / "fails.py"
  script.write_text("import sys\nprint('working')\nsys.exit('climjax: error: bad input')\n")
  with pytest.raises(RuntimeError, match="bad input"):
    notebook_plots.run_script(str(tmp_path), "fails.py")
