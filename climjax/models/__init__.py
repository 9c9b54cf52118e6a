"""flax.linen modules: the supervised CNNs (cnn.py) and the detector (detector.py)."""
