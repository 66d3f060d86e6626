"""Trained quantization: 1-D k-means weight sharing with trainable centroids."""
from .kmeans import kmeans_1d
from .shared import KMeans, is_shared, round_, share_, share_weights_, shared_names, shared_weight, strip_, unshare_

__all__ = ["KMeans", "kmeans_1d", "is_shared", "round_", "share_", "share_weights_", "shared_names", "shared_weight",
           "strip_", "unshare_"]
