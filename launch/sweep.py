"""Hyper-parameter search for one method on one task, with optuna's TPE sampler.

  python launch/sweep.py --config=configs/tc.py --method=svm --trials=20 --workdir=runs/sweep/tc_svm
  python launch/sweep.py --config=configs/wf.py --method=cnn --trials=10 --workdir=runs/sweep/wf_cnn
  python launch/sweep.py --config=configs/ar.py:tiny --method=rf --trials=2 --workdir=/tmp/ar_rf

Liu et al. (2016) chose every method's hyper-parameters by Bayesian
optimisation with Spearmint (Gaussian processes); TPE (a tree-structured Parzen
estimator) is its maintained counterpart. Methods: `cnn` (the config's
network) and the scikit-learn baselines `lr`, `knn`, `svm`, `rf`
(climjax/evaluation/baselines.py). The search space is data in the config
file (`get_search_space()[method]`); trial budgets and data reductions are in
its `get_sweep(arg)`.

Every trial fits on part of the training split and is scored on a stratified
validation part carved from the *training* split (`validation_fraction`); the
test split is read only once, by `--evaluate_best`, after the search.

The workdir gets:
  trials.jsonl    one JSON object per finished trial: params, validation accuracy, seconds
  trials.csv      every trial so far as a table (rewritten after each trial)
  best.json       the best configuration so far and its validation accuracy
  study.journal   optuna's journal: rerunning with the same workdir continues the
                  study up to --trials in total instead of starting again
  final.json      (--evaluate_best) the best configuration fitted on the whole
                  training split and scored on train and test
  best_cnn/       (cnn) that final run's workdir, as launch/main.py leaves it
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import sys
from collections.abc import Callable

# configs/ lives beside climjax/ at the repository root, not inside the package.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from climjax import platform  # noqa: E402  (imports no JAX)
from climjax.data.errors import DataError  # noqa: E402
from climjax.training.metrics import write_json  # noqa: E402  (imports no JAX)
from climjax.training.validate import ConfigError  # noqa: E402  (imports no JAX)

METHODS = ("cnn", "lr", "knn", "svm", "rf")


# ---- the config file: search space and sweep settings -----------------------------


def load_config_module(
  config_file: str, required: tuple[str, ...] = ("get_config", "get_sweep", "get_search_space")
):
  """(module, arg) for 'path/to/config.py[:arg]', the syntax of --config."""
  path, _, arg = config_file.partition(":")
  if not os.path.exists(path):
    raise ConfigError(f"--config={config_file}: no file {path}")
  name = f"_climjax_config_{os.path.splitext(os.path.basename(path))[0]}"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for function in required:
    if not hasattr(module, function):
      raise ConfigError(f"--config={config_file}: the file defines no {function}()")
  return module, arg or None


def suggest(trial: optuna.Trial, space: dict[str, tuple]) -> dict:
  """Draws one value per entry of a search space (kind, ...) from the trial."""
  params = {}
  for name, spec in space.items():
    kind, *args = spec
    if kind == "float":
      params[name] = trial.suggest_float(name, *args)
    elif kind == "log_float":
      params[name] = trial.suggest_float(name, *args, log=True)
    elif kind == "int":
      params[name] = trial.suggest_int(name, *args)
    elif kind == "log_int":
      params[name] = trial.suggest_int(name, *args, log=True)
    elif kind == "categorical":
      params[name] = trial.suggest_categorical(name, list(args[0]))
    else:
      raise ConfigError(
        f"search space entry {name!r}: unknown kind {kind!r}; "
        "expected float, log_float, int, log_int or categorical"
      )
  return params


def with_params(config: ml_collections.ConfigDict, params: dict) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted fields ("optimizer.learning_rate") set from `params`."""
  config = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in params.items():
    *parents, key = dotted.split(".")
    node = config
    for part in parents:
      node = node[part]
    if key not in node:
      raise ConfigError(f"search space field {dotted!r} is not in the config")
    # ConfigDict keeps a field's type: an int field (warmup_steps) takes an int.
    node[key] = type(node[key])(value) if isinstance(node[key], (int, float)) else value
  return config


# ---- the CNN: a short training run scored on the validation part -----------------


class SubsetSource:
  """The rows `indices` of a random-access source, as a random-access source."""

  def __init__(self, source, indices: np.ndarray):
    self._source = source
    self._indices = np.asarray(indices)

  def __len__(self) -> int:
    return len(self._indices)

  def __getitem__(self, i: int) -> dict:
    return self._source[int(self._indices[i])]

  def __getitems__(self, positions) -> list[dict]:
    return self._source.__getitems__([int(self._indices[i]) for i in positions])


def read_labels(source, batch: int = 512) -> np.ndarray:
  return np.concatenate(
    [
      np.array(
        [row["label"] for row in source.__getitems__(list(range(s, min(s + batch, len(source)))))]
      )
      for s in range(0, len(source), batch)
    ]
  ).astype(np.int32)


def train_cnn_trial(config, fit_source, val_source, stats, *, steps: int) -> dict:
  """Trains the config's CNN for `steps` on `fit_source`; accuracy on `val_source`.

  The one training loop (climjax.training.train) with the fit / validation
  parts standing for the train / test splits, in a scratch workdir: a trial
  is minutes long and is rerun rather than resumed.
  """
  import tempfile

  from climjax.tasks import classification
  from climjax.training import train

  config = ml_collections.ConfigDict(config.to_dict())
  config.train.steps = steps
  config.train.eval_every = 0
  config.parallel.strategy = "single"
  data = classification.task_data(config, {"train": fit_source, "test": val_source}, stats)
  with tempfile.TemporaryDirectory(prefix="climjax_trial_") as workdir:
    summary = train.train_and_evaluate(config, workdir, data=data)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      logged = [json.loads(line) for line in f if line.strip()]
  return {
    "validation_accuracy": summary["test_accuracy"],
    "validation_loss": summary["test_loss"],
    "final_train_loss": next(r["loss"] for r in reversed(logged) if "loss" in r),
    "train_seconds": summary["train_seconds"],
  }


def cnn_objective(config, sweep, space, log) -> tuple[Callable, Callable]:
  """(objective, final) for the CNN: trials train on the fit part, final trains on all of train."""
  from climjax.data import tfds_builders
  from climjax.evaluation import baselines
  from climjax.training import train

  builder = tfds_builders.patches_builder(config.data, config.task)
  sources, stats = tfds_builders.prepare(builder, key="patch")
  # The statistics span the whole training split, validation part included: the
  # final run normalises with exactly these, and per-channel means and spreads
  # carry next to nothing about the validation labels.
  labels = read_labels(sources["train"])
  fit, val = baselines.validation_split(labels, sweep.validation_fraction, sweep.seed)
  fit_source = SubsetSource(sources["train"], fit)
  val_source = SubsetSource(sources["train"], val)
  log(
    f"[sweep] cnn: {len(fit)} fit / {len(val)} validation examples, {sweep.cnn_steps} steps a trial"
  )

  def objective(trial: optuna.Trial) -> float:
    params = suggest(trial, space)
    result = train_cnn_trial(
      with_params(config, params), fit_source, val_source, stats, steps=sweep.cnn_steps
    )
    for key, value in result.items():
      trial.set_user_attr(key, value)
    return result["validation_accuracy"]

  def final(params: dict, workdir: str) -> dict:
    run_dir = os.path.join(workdir, "best_cnn")
    summary = train.train_and_evaluate(with_params(config, params), run_dir)
    return {
      "task": config.task,
      "method": "cnn",
      "params": params,
      "data_source": config.data.source,
      "num_train": len(sources["train"]),
      "num_test": len(sources["test"]),
      "train_accuracy": summary["train_accuracy"],
      "test_accuracy": summary["test_accuracy"],
      "fit_seconds": summary["train_seconds"],
      "workdir": run_dir,
    }

  return objective, final


# ---- the baselines: scikit-learn fits on the fit part -----------------------------


def baseline_objective(method, config, sweep, space, log, arrays=None) -> tuple[Callable, Callable]:
  """(objective, final) for a scikit-learn baseline on the task's flattened patches."""
  from climjax.evaluation import baselines

  if arrays is None:
    arrays = baselines.load_arrays(
      config,
      pool=sweep.baselines.pool,
      max_train=sweep.baselines.max_train,
      seed=sweep.seed,
    )
  fit, val = baselines.validation_split(arrays.y_train, sweep.validation_fraction, sweep.seed)
  n_jobs = sweep.baselines.get("n_jobs", None)
  log(
    f"[sweep] {method}: {len(fit)} fit / {len(val)} validation examples, "
    f"{arrays.x_train.shape[1]} features (pool {arrays.pool})"
  )
  x_fit, y_fit = arrays.x_train[fit], arrays.y_train[fit]
  x_val, y_val = arrays.x_train[val], arrays.y_train[val]

  def objective(trial: optuna.Trial) -> float:
    params = suggest(trial, space)
    result = baselines.fit_and_score(
      method,
      params,
      x_fit,
      y_fit,
      # Validation only: scoring the fit part too doubled an SVM trial's time.
      {"validation": (x_val, y_val)},
      seed=sweep.seed,
      n_jobs=n_jobs,
    )
    for key in (
      "validation_precision",
      "validation_recall",
      "fit_seconds",
      "converged",
    ):
      trial.set_user_attr(key, result[key])
    return result["validation_accuracy"]

  def final(params: dict, workdir: str) -> dict:
    del workdir
    return baselines.evaluate(method, params, arrays, seed=sweep.seed, n_jobs=n_jobs)

  return objective, final


# ---- the study, its log and its result -------------------------------------------


def trial_record(trial: optuna.trial.FrozenTrial) -> dict:
  seconds = None
  if trial.datetime_start and trial.datetime_complete:
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
  return {
    "number": trial.number,
    "state": trial.state.name,
    "validation_accuracy": trial.value,
    "params": trial.params,
    "seconds": seconds,
    **trial.user_attrs,
  }


def _write_trials_csv(path: str, records: list[dict]) -> None:
  param_names = sorted({name for r in records for name in r["params"]})
  extra = sorted(
    {k for r in records for k in r}
    - {"number", "state", "validation_accuracy", "params", "seconds"}
  )
  columns = ["number", "state", "validation_accuracy", "seconds", *param_names, *extra]
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for r in records:
      row = {**r, **r["params"]}
      writer.writerow([row.get(c, "") for c in columns])
  os.replace(tmp, path)


def run_sweep(
  config: ml_collections.ConfigDict,
  *,
  sweep: ml_collections.ConfigDict,
  search_space: dict[str, dict[str, tuple]],
  method: str,
  trials: int,
  workdir: str,
  evaluate_best: bool = True,
  arrays=None,
  log: Callable[[str], None] = print,
) -> dict:
  """Runs (or continues) a TPE study of `trials` trials in total; returns its result.

  The result: {"best": best.json's content, "final": final.json's or None,
  "trials": one record per trial}. `arrays` (baselines.PatchArrays) skips
  reading the data again when the caller already has it.
  """
  if method not in METHODS:
    raise ConfigError(f"--method must be one of {METHODS}, got {method!r}")
  if method not in search_space:
    raise ConfigError(f"the config's get_search_space() has no entry for {method!r}")
  if trials < 1:
    raise ConfigError(f"--trials must be at least 1, got {trials}")
  os.makedirs(workdir, exist_ok=True)
  space = search_space[method]
  if method == "cnn":
    objective, final = cnn_objective(config, sweep, space, log)
  else:
    objective, final = baseline_objective(method, config, sweep, space, log, arrays)

  optuna.logging.set_verbosity(optuna.logging.WARNING)  # our one line per trial instead
  storage = optuna.storages.JournalStorage(
    optuna.storages.journal.JournalFileBackend(os.path.join(workdir, "study.journal"))
  )
  finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
  study = optuna.create_study(
    study_name=f"{config.task}-{method}", storage=storage, direction="maximize", load_if_exists=True
  )
  done = len(study.get_trials(deepcopy=False, states=finished))
  # TPE needs a few random trials before its density model means anything; with
  # the small budgets of the table, half the trials (at most optuna's 10) are random.
  # The seed moves on with the trials already run, so a continued study does not
  # replay the random draws of its first part.
  study.sampler = optuna.samplers.TPESampler(
    seed=sweep.seed + done, n_startup_trials=max(1, min(10, trials // 2)), multivariate=True
  )
  log_path = os.path.join(workdir, "trials.jsonl")

  def record(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    entry = trial_record(trial)
    with open(log_path, "a") as f:
      f.write(json.dumps(entry, default=str) + "\n")
    _write_trials_csv(os.path.join(workdir, "trials.csv"), [trial_record(t) for t in study.trials])
    best = study.best_trial
    write_json(
      os.path.join(workdir, "best.json"),
      {
        "task": config.task,
        "method": method,
        "data_source": config.data.source,
        "params": best.params,
        "validation_accuracy": best.value,
        "trial": best.number,
        "num_trials": len(study.get_trials(deepcopy=False, states=finished)),
      },
    )
    value = "failed" if trial.value is None else f"{trial.value:.4f}"
    log(
      f"[sweep] {config.task} {method} trial {trial.number + 1}/{trials}: validation accuracy "
      f"{value} ({entry['seconds'] or 0:.0f} s) {trial.params}; best {best.value:.4f}"
    )

  if done < trials:
    study.optimize(objective, n_trials=trials - done, callbacks=[record])
  else:
    log(f"[sweep] {config.task} {method}: {done} trials already in {workdir}")
  with open(os.path.join(workdir, "best.json")) as f:
    best = json.load(f)
  result = {"best": best, "final": None, "trials": [trial_record(t) for t in study.trials]}
  if evaluate_best:
    log(
      f"[sweep] {config.task} {method}: fitting the best configuration on the whole training split"
    )
    result["final"] = {
      **final(best["params"], workdir),
      "validation_accuracy": best["validation_accuracy"],
    }
    write_json(os.path.join(workdir, "final.json"), result["final"])
    log(
      f"[sweep] {config.task} {method}: train accuracy {result['final']['train_accuracy']:.4f}, "
      f"test accuracy {result['final']['test_accuracy']:.4f}"
    )
  return result


def _fail(message: str) -> None:
  print(f"climjax: error: {message}", file=sys.stderr)
  sys.exit(2)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  if config is None:
    _fail("--config is required, e.g. --config=configs/tc.py")
  workdir = _WORKDIR.value or os.path.join("runs", "sweep", f"{config.name}_{_METHOD.value}")
  # As launch/main.py: a bad value or file ends in one line naming it (exit status 2).
  try:
    module, arg = load_config_module(flags.FLAGS["config"].config_filename)
    info = platform.apply(config.platform, argv=sys.argv)
    print(f"[sweep] platform: {info}")
    run_sweep(
      config,
      sweep=module.get_sweep(arg),
      search_space=module.get_search_space(),
      method=_METHOD.value,
      trials=_TRIALS.value,
      workdir=workdir,
      evaluate_best=_EVALUATE_BEST.value,
    )
  except (ConfigError, DataError) as e:
    _fail(str(e))


if __name__ == "__main__":
  # Flags are defined only when run as a script: launch/reproduce_table.py imports
  # this module for run_sweep and defines flags of its own.
  _CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
  )
  _METHOD = flags.DEFINE_enum("method", None, METHODS, "Method to tune.", required=True)
  _TRIALS = flags.DEFINE_integer("trials", 10, "Trials in total (a rerun continues the study).")
  _WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (default runs/sweep/<config>_<method>)."
  )
  _EVALUATE_BEST = flags.DEFINE_bool(
    "evaluate_best", True, "Fit the best configuration on all of train and score it on test."
  )
  app.run(main)
