"""Trained quantization: 1-D k-means weight sharing with trainable centroids."""
from .kmeans import kmeans_1d
from .rate import RateLoss, check_rate, harden_
from .share import KMeans, round_, share_weights_

__all__ = ["KMeans", "RateLoss", "check_rate", "harden_", "kmeans_1d", "round_", "share_weights_"]
