"""Evaluation on host (numpy) arrays, after the jitted forward pass.

classification.py: accuracy, precision, recall of the patch classifiers.
baselines.py: the scikit-learn baselines of Liu et al. (2016).
detection.py: box decoding, per-class NMS, average precision (VOC all-point and
the original ExtremeWeather variant), AP tables and the predictions.nc writer.
events.py: detections and tracks on disk (CF point and trajectory files, CSV).
tracking.py: detections linked in time per class (numpy only).
climatology.py: event statistics of runs and their differences (launch/climatology.py).
scaling_plots.py: the scaling sweep's figures (launch/scaling.py).
"""
