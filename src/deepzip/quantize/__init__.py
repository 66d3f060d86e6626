"""Quantization: trained 1-D k-means weight sharing with trainable centroids (share.py, rate.py),
and post-training rounding of pretrained weights with calibration (calibrate.py, gptq.py, ptq.py)."""
from .calibrate import Calibration, calibrate
from .gptq import gptq_levels
from .kmeans import kmeans_1d
from .ptq import PostTraining, quantize_pretrained_, row_steps
from .rate import RateLoss, check_rate, harden_
from .share import KMeans, round_, share_weights_

__all__ = ["Calibration", "KMeans", "PostTraining", "RateLoss", "calibrate", "check_rate", "gptq_levels", "harden_",
           "kmeans_1d", "quantize_pretrained_", "round_", "row_steps", "share_weights_"]
