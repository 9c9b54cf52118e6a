"""The classical baselines of Liu et al. (2016): logistic regression, k-NN, SVM, random forest.

scikit-learn estimators (nothing reimplemented) trained on the CNN's own data:
the same tfds train/test splits (`tfds_builders.prepare`), standardised by the
same transform with the same training-split statistics
(`climjax.data.stats.normalizer`, which the CNN's task applies too), then flattened to one feature vector per patch.

Two documented reductions keep them affordable on a laptop, and both are set
per task in the config's `get_sweep()["baselines"]`:

- `pool`: non-overlapping average pooling of the normalised patch before
  flattening (the AR patches, 148x224x2 = 66k features, are pooled 4x4 to
  37x56x2). Pooling is fixed, not learned, and the same for train and test.
- `max_train`: kernel SVM and k-NN cost grows with the square of the number of
  training examples, so the baselines fit on a fixed random subset of at most
  this many examples *of the same training split*; they are always scored on
  the whole test split. Their "train accuracy" is on the examples they fit.

Method names are the short keys of `METHODS`; hyper-parameters are the
estimators' own keyword arguments, so a search space in a config names them
directly (`{"svm": {"C": ..., "gamma": ...}}`).
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import ml_collections
import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from climjax.data import tfds_builders
from climjax.data.stats import normalizer as channel_normalizer
from climjax.evaluation import classification

METHODS = ("lr", "knn", "svm", "rf")
METHOD_NAMES = {
  "lr": "logistic regression",
  "knn": "k-nearest neighbours",
  "svm": "SVM (RBF kernel)",
  "rf": "random forest",
}


@dataclasses.dataclass(frozen=True)
class PatchArrays:
  """Flattened, normalised patches of one task, ready for scikit-learn.

  x_*: float32 (N, features); y_*: int32 (N,). `train_index` gives the position
  of each training row in the tfds train split; `patch_shape` is the
  (lat, lon, channel) shape after pooling, whose product is the feature count.
  """

  task: str
  source: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  train_index: np.ndarray
  patch_shape: tuple[int, int, int]
  pool: int


def average_pool(x: np.ndarray, factor: int) -> np.ndarray:
  """(N, H, W, C) -> (N, H // factor, W // factor, C) block means; edge rows that do not fill a block are dropped."""
  if factor < 1:
    raise ValueError(f"pool factor must be >= 1, got {factor}")
  if factor == 1:
    return x
  n, h, w, c = x.shape
  hp, wp = h // factor, w // factor
  if hp == 0 or wp == 0:
    raise ValueError(f"pool factor {factor} is larger than the {h}x{w} patch")
  x = x[:, : hp * factor, : wp * factor]
  return x.reshape(n, hp, factor, wp, factor, c).mean(axis=(2, 4), dtype=np.float32)


def read_split(
  source, transform, *, indices: np.ndarray, pool: int = 1, batch: int = 256
) -> tuple[np.ndarray, np.ndarray]:
  """Reads `indices` of a random-access split -> (normalised, pooled, flattened x, y)."""
  xs, ys = [], []
  for start in range(0, len(indices), batch):
    rows = source.__getitems__([int(i) for i in indices[start : start + batch]])
    out = transform(
      {"patch": np.stack([r["patch"] for r in rows]), "label": np.array([r["label"] for r in rows])}
    )
    patch = average_pool(np.asarray(out["patch"], np.float32), pool)
    xs.append(patch.reshape(len(rows), -1))
    ys.append(np.asarray(out["label"], np.int32))
  return np.concatenate(xs), np.concatenate(ys)


def load_arrays(
  config: ml_collections.ConfigDict,
  *,
  pool: int = 1,
  max_train: int | None = None,
  seed: int = 0,
) -> PatchArrays:
  """The task's train and test splits as the CNN sees them, flattened for scikit-learn.

  Builds the tfds dataset of `config.data` if it is not there yet (the same
  dataset `launch/main.py` trains the CNN on). With `max_train`, a fixed random
  subset (drawn with `seed`) of the training split is kept.
  """
  builder = tfds_builders.patches_builder(config.data, config.task)
  sources, stats = tfds_builders.prepare(builder, key="patch")
  # The very function the CNN task (climjax.tasks.classification) standardises with.
  transform = channel_normalizer(stats, "patch")
  n_train = len(sources["train"])
  train_index = np.arange(n_train)
  if max_train is not None and max_train < n_train:
    train_index = np.sort(np.random.default_rng(seed).choice(n_train, max_train, replace=False))
  x_train, y_train = read_split(sources["train"], transform, indices=train_index, pool=pool)
  x_test, y_test = read_split(
    sources["test"], transform, indices=np.arange(len(sources["test"])), pool=pool
  )
  shape = tuple(sources["train"][0]["patch"].shape)
  pooled = (shape[0] // pool, shape[1] // pool, shape[2])
  return PatchArrays(
    task=config.task,
    source=config.data.source,
    x_train=x_train,
    y_train=y_train,
    x_test=x_test,
    y_test=y_test,
    train_index=train_index,
    patch_shape=pooled,
    pool=pool,
  )


def validation_split(
  labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Stratified (fit, validation) positions within a training set; the test split is never used."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"validation_fraction must be in (0, 1), got {fraction}")
  labels = np.asarray(labels)
  positions = np.arange(len(labels))
  # Stratify only when every class can appear on both sides.
  counts = np.bincount(labels)
  stratify = labels if counts[counts > 0].min() >= 2 else None
  fit, val = train_test_split(positions, test_size=fraction, random_state=seed, stratify=stratify)
  return np.sort(fit), np.sort(val)


def make_estimator(method: str, params: dict, *, seed: int = 0, n_jobs: int | None = None):
  """The scikit-learn estimator `method` names, with `params` as its keyword arguments."""
  params = dict(params)
  if method == "lr":
    # lbfgs on standardised inputs; the cap keeps a weakly regularised trial from
    # running away (fit_and_score reports whether it converged).
    return LogisticRegression(max_iter=300, random_state=seed, **params)
  if method == "knn":
    return KNeighborsClassifier(n_jobs=n_jobs, **params)
  if method == "svm":
    return SVC(kernel="rbf", cache_size=1000, random_state=seed, **params)
  if method == "rf":
    return RandomForestClassifier(random_state=seed, n_jobs=n_jobs, **params)
  raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def fit_and_score(
  method: str,
  params: dict,
  x_fit: np.ndarray,
  y_fit: np.ndarray,
  scored: dict[str, tuple[np.ndarray, np.ndarray]],
  *,
  seed: int = 0,
  n_jobs: int | None = None,
) -> dict:
  """Fits on (x_fit, y_fit); scores every named (x, y) in `scored` -> {"<name>_accuracy": ...}.

  Also returns fit_seconds and score_seconds (wall time), and `converged`: False
  when the solver stopped at its iteration cap (recorded, not printed: a sweep
  tries weakly regularised settings on purpose).
  """
  estimator = make_estimator(method, params, seed=seed, n_jobs=n_jobs)
  # One BLAS thread: on the shared 2-core development machine, multi-threaded
  # OpenBLAS made logistic regression's lbfgs ~10x slower (22 s against 1.5 s
  # for 1,024 WF patches); the other methods ran about as fast with one.
  with threadpool_limits(limits=1, user_api="blas"):
    t0 = time.time()
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always", ConvergenceWarning)
      estimator.fit(x_fit, y_fit)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:  # anything else is still shown
      if not issubclass(w.category, ConvergenceWarning):
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    result = {"fit_seconds": time.time() - t0, "converged": converged}
    t0 = time.time()
    for name, (x, y) in scored.items():
      result.update(classification.metrics_dict(y, estimator.predict(x), prefix=f"{name}_"))
    result["score_seconds"] = time.time() - t0
  return result


def evaluate(
  method: str, params: dict, arrays: PatchArrays, *, seed: int = 0, n_jobs: int | None = None
) -> dict:
  """Fits `method` on all of `arrays`' training rows; train and test accuracy and friends."""
  result = fit_and_score(
    method,
    params,
    arrays.x_train,
    arrays.y_train,
    {"train": (arrays.x_train, arrays.y_train), "test": (arrays.x_test, arrays.y_test)},
    seed=seed,
    n_jobs=n_jobs,
  )
  return {
    "task": arrays.task,
    "method": method,
    "params": dict(params),
    "data_source": arrays.source,
    "num_train": len(arrays.y_train),
    "num_test": len(arrays.y_test),
    "num_features": int(arrays.x_train.shape[1]),
    "pool": arrays.pool,
    **result,
  }
