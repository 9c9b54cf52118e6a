"""Pattern discovery: does the encoder separate a class it was never told about?

A detector trained with one class's boxes withheld (configs/discovery.py) still
reconstructs every field, so its encoder may represent the withheld events even
though its heads were taught they are background. This module measures that on
the held-out fields, one vector per grid cell (the detector's "embedding"
output, or the raw fields pooled over each cell for comparison):

- `cell_classes`: the truth of each cell: the class of the smallest true box
  whose area covers the cell's centre, BACKGROUND (-1) where none does.
- `sample_cells`: a class-balanced sample of cells (at most `per_class` of each
  class and of the background), the population every measure below uses.
- `cluster`: k-means and HDBSCAN (scikit-learn) on the standardised vectors;
  `best_match`: the cluster with the best F1 for the withheld class, its purity
  (the fraction of its cells that are of that class) and recall (the fraction
  of that class's cells it holds).
- `probe`: a linear probe (logistic regression) for "withheld class or not",
  trained on `shots` labelled cells of the withheld class and `shots` of every
  other kind (background and each other class), scored by balanced accuracy on
  the sampled cells it did not see, averaged over random draws.

numpy and scikit-learn only; nothing here trains a network (launch/discover.py
does, through the one training loop).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

BACKGROUND = -1


def cell_classes(
  boxes: np.ndarray, classes: np.ndarray, mask: np.ndarray, grid_shape: tuple[int, int],
  cell_size: int,
) -> np.ndarray:  # fmt: skip
  """(N, gh, gw) class of each cell: the smallest real box covering its centre, else -1.

  boxes: (N, M, 4) pixel (ymin, xmin, ymax, xmax); classes, mask: (N, M).
  """
  gh, gw = grid_shape
  cy = (np.arange(gh) + 0.5) * cell_size
  cx = (np.arange(gw) + 0.5) * cell_size
  out = np.full((len(boxes), gh, gw), BACKGROUND, np.int32)
  for n in range(len(boxes)):
    real = np.flatnonzero(mask[n] > 0)
    area = (boxes[n, real, 2] - boxes[n, real, 0]) * (boxes[n, real, 3] - boxes[n, real, 1])
    for j in real[np.argsort(-area, kind="stable")]:  # largest first: smaller boxes overwrite
      y0, x0, y1, x1 = boxes[n, j]
      rows = (cy >= y0) & (cy < y1)
      cols = (cx >= x0) & (cx < x1)
      out[n][np.ix_(rows, cols)] = classes[n, j]
  return out


def pooled_fields(fields: np.ndarray, cell_size: int) -> np.ndarray:
  """(N, gh, gw, 2C): the mean and standard deviation of each channel over each cell."""
  n, h, w, c = fields.shape
  blocks = fields.reshape(n, h // cell_size, cell_size, w // cell_size, cell_size, c)
  return np.concatenate([blocks.mean(axis=(2, 4)), blocks.std(axis=(2, 4))], axis=-1)


def sample_cells(labels: np.ndarray, *, per_class: int, seed: int = 0) -> np.ndarray:
  """Flat indices into `labels` (any shape): at most `per_class` cells of each class and
  of the background, drawn at random, sorted."""
  flat = labels.reshape(-1)
  rng = np.random.default_rng(seed)
  picked = []
  for c in np.unique(flat):
    where = np.flatnonzero(flat == c)
    picked.append(rng.choice(where, size=min(per_class, where.size), replace=False))
  return np.sort(np.concatenate(picked))


def standardise(vectors: np.ndarray) -> np.ndarray:
  return StandardScaler().fit_transform(vectors.astype(np.float64))


@dataclasses.dataclass
class Clusters:
  method: str
  assignment: np.ndarray  # (n,) cluster id; -1 = HDBSCAN noise
  model: object  # the fitted estimator
  scaler: StandardScaler  # the standardisation it was fitted after

  def assign(self, vectors: np.ndarray) -> np.ndarray:
    """The cluster of new vectors (k-means: the nearest centre)."""
    if not hasattr(self.model, "predict"):
      raise ValueError(f"{self.method} cannot assign new points")
    return self.model.predict(self.scaler.transform(vectors.astype(np.float64)))


def cluster(vectors: np.ndarray, *, k: int, min_cluster_size: int, seed: int = 0) -> list[Clusters]:
  """k-means (k clusters) and HDBSCAN on the standardised vectors (HDBSCAN on their top
  principal components, where density is meaningful)."""
  scaler = StandardScaler().fit(vectors.astype(np.float64))
  x = scaler.transform(vectors.astype(np.float64))
  kmeans = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
  reduced = PCA(n_components=min(10, x.shape[1]), random_state=seed).fit_transform(x)
  density = HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit(reduced)
  return [
    Clusters("kmeans", kmeans.labels_, kmeans, scaler),
    Clusters("hdbscan", density.labels_, density, scaler),
  ]


def best_match(assignment: np.ndarray, is_target: np.ndarray) -> dict:
  """The cluster (noise excluded) with the best F1 for the target cells: purity, recall."""
  best = {"cluster": None, "purity": 0.0, "recall": 0.0, "f1": 0.0, "size": 0}
  total = int(is_target.sum())
  for c in np.unique(assignment):
    if c < 0:
      continue
    members = assignment == c
    hits = int(np.sum(members & is_target))
    purity, recall = hits / int(members.sum()), hits / max(total, 1)
    f1 = 0.0 if hits == 0 else 2 * purity * recall / (purity + recall)
    if f1 > best["f1"]:
      best = {"cluster": int(c), "purity": purity, "recall": recall, "f1": f1,
              "size": int(members.sum())}  # fmt: skip
  best["num_clusters"] = int(len(set(np.unique(assignment)) - {-1}))
  return best


def probe(
  vectors: np.ndarray, labels: np.ndarray, *, target: int, shots: int, draws: int, seed: int = 0
) -> tuple[float, float]:
  """Balanced accuracy (mean, std over draws) of a linear probe for `target` vs the rest,
  trained on `shots` cells of the target and `shots` of every other kind."""
  x = standardise(vectors)
  rng = np.random.default_rng(seed)
  kinds = np.unique(labels)
  scores = []
  for _ in range(draws):
    # `shots` of each kind, fewer only where a kind has no more cells to spare for testing.
    pools = [np.flatnonzero(labels == kind) for kind in kinds]
    train = np.concatenate([
      rng.choice(pool, size=min(shots, pool.size - 1), replace=False) for pool in pools
    ])  # fmt: skip
    test = np.setdiff1d(np.arange(len(labels)), train)
    y = labels == target
    fit = LogisticRegression(C=1.0, max_iter=2000).fit(x[train], y[train])
    scores.append(balanced_accuracy_score(y[test], fit.predict(x[test])))
  return float(np.mean(scores)), float(np.std(scores))


def measure(
  vectors: np.ndarray, labels: np.ndarray, *, target: int, k: int, min_cluster_size: int,
  shots: tuple[int, ...], draws: int, seed: int = 0,
) -> tuple[dict, list[Clusters]]:  # fmt: skip
  """Every measure for one representation of the sampled cells: best-matching cluster of
  each method, and the probe at each number of shots. Returns (scores, clusters)."""
  clusters = cluster(vectors, k=k, min_cluster_size=min_cluster_size, seed=seed)
  scores = {}
  for c in clusters:
    match = best_match(c.assignment, labels == target)
    for key in ("purity", "recall", "f1", "num_clusters"):
      scores[f"{c.method}_{key}"] = match[key]
  for n in shots:
    scores[f"probe@{n}"], scores[f"probe@{n}_draw_std"] = probe(
      vectors, labels, target=target, shots=n, draws=draws, seed=seed
    )
  return scores, clusters
