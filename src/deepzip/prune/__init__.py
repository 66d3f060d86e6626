"""Pruning: criteria (magnitude, activation-weighted, one's own), structured (unit) pruning, schedules."""
from .criteria import ActivationWeighted, Criterion, Magnitude
from .magnitude import MagnitudePruning, prune_, sparsity_of
from .schedule import GradualPruning, agp_sparsity, check_schedule, ramp, scaled
from .structured import UNITS_RULE, prune_dead_inputs_, prune_units_

__all__ = ["ActivationWeighted", "Criterion", "GradualPruning", "Magnitude", "MagnitudePruning", "UNITS_RULE",
           "agp_sparsity", "check_schedule", "prune_",
           "prune_dead_inputs_", "prune_units_", "ramp", "scaled", "sparsity_of"]
