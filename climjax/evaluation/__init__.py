"""Evaluation on host (numpy) arrays, after the jitted forward pass.

classification.py: accuracy, precision, recall of the patch classifiers.
baselines.py: the scikit-learn baselines of Liu et al. (2016).
detection.py: box decoding, per-class NMS, average precision (VOC all-point and
the original ExtremeWeather variant), AP tables and the predictions.nc writer.
"""
