"""Streaming channel statistics equal the one-shot numpy ones."""

import numpy as np
import pytest

from climjax.data import stats


def test_streaming_matches_numpy_and_merges(tmp_path):
  rng = np.random.default_rng(0)
  x = rng.normal(loc=[1e5, 300.0, 0.0], scale=[1e3, 5.0, 1e-4], size=(50, 7, 9, 3))
  acc = stats.ChannelStats()
  for chunk in np.array_split(x, 7):
    acc.update(chunk)
  got = acc.finalize()
  flat = x.reshape(-1, 3)
  np.testing.assert_allclose(got["mean"], flat.mean(0), rtol=1e-12)
  np.testing.assert_allclose(got["std"], flat.std(0), rtol=1e-9)
  np.testing.assert_array_equal(got["min"], flat.min(0))
  assert got["count"] == flat.shape[0]

  a, b = stats.ChannelStats().update(x[:13]), stats.ChannelStats().update(x[13:])
  np.testing.assert_allclose(a.merge(b).finalize()["std"], flat.std(0), rtol=1e-9)

  path = str(tmp_path / "stats.json")
  stats.save(got, path)
  z = stats.normalize(x, stats.load(path))
  assert z.dtype == np.float32
  np.testing.assert_allclose(z.reshape(-1, 3).mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(z.reshape(-1, 3).std(0), 1, atol=1e-4)


def test_nans_are_skipped_and_counted_and_channels_named(tmp_path):
  x = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
  x[0, 1, 2] = np.nan
  acc = stats.ChannelStats(["PSL", "TMQ", "T500"]).update(x[:1]).update(x[1:])
  got = acc.finalize()
  flat = x.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(got["mean"], np.nanmean(flat, 0), rtol=1e-12)
  np.testing.assert_allclose(got["std"], np.nanstd(flat, 0), rtol=1e-12)
  np.testing.assert_array_equal(got["num_missing"], [0, 0, 1])
  assert got["count"] == 8 and got["channels"] == ["PSL", "TMQ", "T500"]

  # Saved beside the data set, atomically, and loaded back exactly.
  dataset = tmp_path / "climo_1979.h5"
  path = stats.stats_path(dataset)
  assert path == str(tmp_path / "climo_1979.stats.json")
  assert stats.stats_path(tmp_path) == str(tmp_path / "stats.json")
  stats.save(got, path)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["climo_1979.stats.json"]
  back = stats.load(path)
  for key in ("mean", "std", "min", "max"):
    np.testing.assert_array_equal(back[key], got[key])

  # A subset of channels in another order; a constant channel is only centred.
  z = stats.normalize(np.stack([x[..., 2], x[..., 0]], -1), back, channels=["T500", "PSL"])
  np.testing.assert_allclose(z[..., 1], (x[..., 0] - got["mean"][0]) / got["std"][0], rtol=1e-6)
  const = stats.ChannelStats().update(np.full((5, 1), 7.0)).finalize()
  np.testing.assert_array_equal(stats.normalize(np.full((2, 1), 9.0), const), [[2.0], [2.0]])


def test_errors_name_the_problem():
  acc = stats.ChannelStats(["PSL", "TMQ"])
  with pytest.raises(ValueError, match="expected arrays"):
    acc.update(np.zeros((4, 3)))
  with pytest.raises(ValueError, match=r"infinite values in channels \['TMQ'\]"):
    acc.update(np.array([[1.0, np.inf]]))
  with pytest.raises(ValueError, match=r"no finite values seen for channels \['PSL', 'TMQ'\]"):
    acc.update(np.full((3, 2), np.nan)).finalize()
  with pytest.raises(ValueError, match="cannot merge"):
    acc.merge(stats.ChannelStats(["PSL", "TS"]).update(np.ones((2, 2))))
