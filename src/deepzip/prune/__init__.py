"""Pruning: masks, magnitude criteria, schedules."""
from .magnitude import MagnitudePruning, prune_, sparsity_of
from .masks import apply_masks_, get_mask, remove_mask_, set_mask_
from .structured import prune_dead_inputs_, prune_units_

__all__ = ["MagnitudePruning", "prune_", "sparsity_of", "apply_masks_", "get_mask", "remove_mask_", "set_mask_",
           "prune_dead_inputs_", "prune_units_"]
