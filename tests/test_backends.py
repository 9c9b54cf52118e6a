"""model.conv_impl="fast" is a CPU choice: off the CPU every layer is XLA's own."""

import jax
import numpy as np
import pytest

from climjax.models import cnn, detector, layers
from climjax.ops import native


def _hlo(model, shape, backend, monkeypatch):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  params = model.init(jax.random.key(0), x)
  monkeypatch.setattr(jax, "default_backend", lambda: backend)
  text = jax.jit(jax.grad(lambda p: jax.tree.reduce(
    lambda a, b: a + b.sum(), model.apply(p, x), 0.0)
  )).lower(params).as_text()  # fmt: skip
  monkeypatch.undo()
  return text


def test_effective_impl():
  assert layers.effective_impl("xla") == "xla"
  assert layers.effective_impl("fast") == ("fast" if jax.default_backend() == "cpu" else "xla")
  with pytest.raises(ValueError, match="model.conv_impl"):
    layers.effective_impl("cudnn")


@pytest.mark.skipif(not native.available(), reason="native kernels not built here")
def test_fast_classifier_uses_native_kernels_on_cpu_and_none_on_a_gpu(monkeypatch):
  model = cnn.TCNet(conv_impl="fast")
  assert "climjax_narrow_conv" in _hlo(model, (2, 32, 32, 8), "cpu", monkeypatch)
  on_gpu = _hlo(model, (2, 32, 32, 8), "gpu", monkeypatch)
  assert "climjax_" not in on_gpu and "custom_call" not in on_gpu
  assert on_gpu == _hlo(cnn.TCNet(conv_impl="xla"), (2, 32, 32, 8), "gpu", monkeypatch)


def test_fast_detector_is_xla_on_a_gpu(monkeypatch):
  model = detector.Detector(features=(4, 6, 8), conv_impl="fast")
  xla = detector.Detector(features=(4, 6, 8), conv_impl="xla")
  shape = (1, 32, 32, 3)
  # (On the CPU the two differ: "fast" times its formulations per shape, ~30 s here.)
  assert _hlo(model, shape, "gpu", monkeypatch) == _hlo(xla, shape, "gpu", monkeypatch)
