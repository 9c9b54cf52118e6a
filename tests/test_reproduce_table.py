"""launch/reproduce_table.py on tiny sizes: every task and method, in CSV, Markdown and a chart."""

import csv
import json
import os

import pytest

from launch import reproduce_table

pytestmark = pytest.mark.slow  # trains every task and baseline once (~25 s)

TASKS = ("tc", "ar", "wf")
METHODS = ("lr", "knn", "svm", "rf", "cnn")


# Smaller than the tiny configs, with the test network in place of the paper's:
# this checks the table's making, not accuracy (tests/test_baselines.py,
# tests/test_train.py and tests/test_cnn.py check the methods and networks).
OVERRIDES = {
  "model.name": "tiny_cnn",
  "data.num_train": 96,
  "data.num_test": 48,
  "train.steps": 3,
  "train.batch_size": 16,
  "train.checkpoint_every": 3,
  "train.log_every": 3,
  "train.eval_batch_size": 48,
}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("table"))
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  rows = reproduce_table.reproduce(
    tasks=TASKS,
    size="tiny",
    workdir=workdir,
    trials=1,
    data_dir=data_dir,
    overrides=OVERRIDES,
    log=lambda _: None,
  )
  return workdir, rows


def test_csv_has_a_row_per_task_and_method(table):
  workdir, rows = table
  with open(os.path.join(workdir, "table.csv")) as f:
    written = list(csv.DictReader(f))
  assert tuple(written[0]) == reproduce_table.CSV_COLUMNS
  assert [(r["task"], r["method"]) for r in written] == [(t, m) for t in TASKS for m in METHODS]
  for r in written:
    assert 0.0 <= float(r["train_accuracy"]) <= 1.0 and 0.0 <= float(r["test_accuracy"]) <= 1.0
    paper = reproduce_table.PAPER_TEST_ACCURACY[r["task"]][r["method"]]
    assert float(r["paper_test_accuracy"]) == pytest.approx(paper / 100)
    assert r["data_source"] == "synthetic"
    assert int(r["trials"]) == (0 if r["method"] == "cnn" else 1)
    json.loads(r["params"])
  assert len(rows) == len(written)


def test_markdown_states_the_source_and_the_paper(table):
  workdir, _ = table
  text = open(os.path.join(workdir, "table.md")).read()
  assert "Data: **synthetic**" in text
  header = next(line for line in text.splitlines() if line.startswith("| method"))
  for task in ("TC", "AR", "WF"):
    for column in ("train", "test", "paper test"):
      assert f"| {task} {column} |" in header
  body = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
  for label in reproduce_table.METHOD_LABELS.values():
    assert label in body
  assert "| 99.10 |" in body["ConvNet"] and "| 76.45 |" in body["K-nearest neighbours"]
  assert text.count("ConvNet ") >= 3 and "against the best baseline" in text


def test_chart_is_a_png(table):
  workdir, _ = table
  with open(os.path.join(workdir, "table.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_each_run_leaves_its_workdir(table):
  workdir, _ = table
  for task in TASKS:
    assert os.path.exists(os.path.join(workdir, task, "cnn", "summary.json"))
    for method in ("lr", "knn", "svm", "rf"):
      assert os.path.exists(os.path.join(workdir, task, method, "final.json"))
