"""climjax: deep learning for extreme weather in climate-model output, in JAX."""

__version__ = "0.1.0"
