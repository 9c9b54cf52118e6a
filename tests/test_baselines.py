"""Baselines: metrics helpers, the CNN's splits and normalisation, and four fitted sklearn models."""

import numpy as np
import pytest

from climjax.data import tfds_builders
from climjax.evaluation import baselines, classification
from climjax.tasks import classification as classification_task
from configs import tc


@pytest.fixture(scope="module")
def config(tmp_path_factory):
  config = tc.get_config("tiny")
  config.data.data_dir = str(tmp_path_factory.mktemp("tfds"))
  config.data.num_train = 400
  config.data.num_test = 200
  return config


@pytest.fixture(scope="module")
def arrays(config):
  return baselines.load_arrays(config)


def test_binary_metrics_and_confusion():
  labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
  predicted = np.array([1, 1, 0, 0, 0, 1, 0, 1])
  cm = classification.confusion_matrix(labels, predicted)
  np.testing.assert_array_equal(cm, [[3, 1], [1, 3]])  # rows: true 0, 1
  m = dict(classification.binary_metrics(labels, predicted))
  assert m["accuracy"] == 0.75 and m["precision"] == 0.75 and m["recall"] == 0.75
  assert (m["true_positive"], m["false_positive"], m["false_negative"], m["true_negative"]) == (
    3,
    1,
    1,
    3,
  )
  assert classification.metrics_dict(labels, predicted, "test_")["test_count"] == 8
  # Nothing predicted positive: precision 0 (the CNN eval's convention), not a division error.
  assert dict(classification.binary_metrics(labels, np.zeros(8, int)))["precision"] == 0.0
  with pytest.raises(ValueError, match="differ in length"):
    classification.accuracy(labels, predicted[:3])
  with pytest.raises(ValueError, match="must lie in"):
    classification.confusion_matrix(labels, predicted + 1)


def test_average_pool_is_block_means():
  x = np.arange(2 * 5 * 7 * 3, dtype=np.float32).reshape(2, 5, 7, 3)
  pooled = baselines.average_pool(x, 2)
  assert pooled.shape == (2, 2, 3, 3)  # the odd last row and column are dropped
  np.testing.assert_allclose(pooled[1, 1, 2, 0], x[1, 2:4, 4:6, 0].mean())
  assert baselines.average_pool(x, 1) is x
  with pytest.raises(ValueError, match="larger than"):
    baselines.average_pool(x, 6)


def test_validation_split_is_stratified_and_disjoint():
  labels = np.array([0] * 60 + [1] * 40)
  fit, val = baselines.validation_split(labels, 0.2, seed=0)
  assert len(val) == 20 and len(fit) == 80 and not set(fit) & set(val)
  assert labels[val].sum() == 8  # 40% positives on both sides
  again = baselines.validation_split(labels, 0.2, seed=0)
  np.testing.assert_array_equal(val, again[1])


def test_arrays_are_the_cnn_splits_with_the_cnn_normalisation(config, arrays):
  sources, stats = tfds_builders.prepare(
    tfds_builders.patches_builder(config.data, "tc"), key="patch"
  )
  assert arrays.x_train.shape == (400, 32 * 32 * 8) and arrays.x_test.shape == (200, 32 * 32 * 8)
  assert arrays.x_train.dtype == np.float32 and arrays.source == "synthetic"
  transform = classification_task.normalizer(stats)  # what the CNN trains on
  row = sources["test"][7]
  expected = transform({"patch": row["patch"][None], "label": np.array([row["label"]])})
  np.testing.assert_array_equal(arrays.x_test[7], expected["patch"].reshape(-1))
  assert arrays.y_test[7] == row["label"]
  # Standardised with train statistics: the train split is centred, unit spread.
  per_channel = arrays.x_train.reshape(-1, 8)
  np.testing.assert_allclose(per_channel.mean(0), 0.0, atol=1e-3)
  np.testing.assert_allclose(per_channel.std(0), 1.0, atol=1e-3)


def test_pooled_subset(config, arrays):
  small = baselines.load_arrays(config, pool=2, max_train=100, seed=1)
  assert small.patch_shape == (16, 16, 8) and small.x_train.shape == (100, 2048)
  assert len(set(small.train_index)) == 100 and small.train_index.max() < 400
  assert small.x_test.shape == (200, 2048)  # the whole test split, always
  full = arrays.x_train[small.train_index[0]].reshape(32, 32, 8)
  np.testing.assert_allclose(
    small.x_train[0].reshape(16, 16, 8), full.reshape(16, 2, 16, 2, 8).mean((1, 3)), rtol=1e-5
  )


@pytest.mark.parametrize(
  "method, params",
  [("lr", {"C": 0.01}), ("knn", {"n_neighbors": 5}), ("svm", {}), ("rf", {"n_estimators": 40})],
)
def test_each_baseline_beats_chance(arrays, method, params):
  result = baselines.evaluate(method, params, arrays, n_jobs=1)
  for split in ("train", "test"):
    assert 0.0 <= result[f"{split}_accuracy"] <= 1.0
  assert result["num_train"] == 400 and result["num_test"] == 200 and result["num_features"] == 8192
  # Held-out synthetic TC patches are easy: every method clears chance (0.5) by far.
  assert result["test_accuracy"] > 0.75, result


def test_unknown_method():
  with pytest.raises(ValueError, match="method must be one of"):
    baselines.make_estimator("xgboost", {})
