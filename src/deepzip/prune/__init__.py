"""Pruning: magnitude criteria, structured (unit) pruning, schedules."""
from .magnitude import MagnitudePruning, prune_, sparsity_of
from .schedule import GradualPruning, agp_sparsity, ramp, scaled
from .structured import prune_dead_inputs_, prune_units_

__all__ = ["GradualPruning", "MagnitudePruning", "agp_sparsity", "prune_", "prune_dead_inputs_", "prune_units_",
           "ramp", "scaled", "sparsity_of"]
