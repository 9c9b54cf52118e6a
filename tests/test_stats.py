"""Streaming channel statistics equal the one-shot numpy ones."""

import numpy as np

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
