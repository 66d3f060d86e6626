"""Reparametrisations of a parameter: masks (pruning) and shared weights (k-means codebooks).

Both prune/ and quantize/ build on this package and neither imports the other. `slots` is the
one walk over a model's logical tensors; `capture` / `restore_` are the structure record a
checkpoint keeps; `strip_` makes everything plain again.
"""
from .masks import apply_masks_, get_mask, mask_name, masked_names, reattach_masks_, remove_mask_, set_mask_
from .shared import SharedWeight, is_shared, lookup, share_, shared_names, shared_weight, sharing, unshare_
from .structure import Slot, capture, restore_, slots, strip_

__all__ = ["SharedWeight", "Slot", "apply_masks_", "capture", "get_mask", "is_shared", "lookup", "mask_name", "masked_names",
           "reattach_masks_", "remove_mask_", "restore_", "set_mask_", "share_", "shared_names", "shared_weight",
           "sharing", "slots", "strip_", "unshare_"]
