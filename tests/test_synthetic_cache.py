"""data.synthetic_cache: generated fields kept on disk are the fields generation gives."""

import numpy as np
import pytest

from climjax.data import fields
from configs import semisup


def test_cached_fields_equal_generated_and_are_not_generated_again(tmp_path, monkeypatch):
  config = semisup.get_config("tiny")
  config.data.num_train = 6
  generated = fields.load_split(config.data, "train")
  config.data.synthetic_cache = str(tmp_path)
  first = fields.load_split(config.data, "train")
  monkeypatch.setattr(fields, "_synthetic_snapshots", lambda *a: pytest.fail("generated again"))
  second = fields.load_split(config.data, "train")
  assert isinstance(second["fields"], np.memmap)
  for key, value in generated.items():
    for other in (first, second):
      if key == "channels":
        assert other[key] == value
      else:
        np.testing.assert_array_equal(np.asarray(other[key]), np.asarray(value), err_msg=key)
  assert [p.name.startswith("train-") for p in tmp_path.iterdir()] == [True]

  config.data.tc_rate = 2.0  # another event climate is another entry, generated afresh
  monkeypatch.undo()
  fields.load_split(config.data, "train")
  assert len(list(tmp_path.iterdir())) == 2
