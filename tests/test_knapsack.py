"""The one knapsack solver: exact against brute force, ties to the earlier option."""
import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from deepzip import knapsack

items = st.lists(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 20).map(float)), min_size=1, max_size=3),
                 min_size=1, max_size=4)


@settings(max_examples=150, deadline=None)
@given(items, st.integers(0, 12))
def test_the_least_cost_within_every_weight_is_exact(options, cap):
    best, picks = knapsack.solve(options, cap)
    for k in range(cap + 1):
        feasible = [sum(o[1] for o in combo) for combo in itertools.product(*options) if sum(o[0] for o in combo) <= k]
        assert best[k] == (min(feasible) if feasible else np.inf)
        if feasible:
            chosen = knapsack.backtrack(options, picks, k)
            assert sum(options[i][c][0] for i, c in enumerate(chosen)) <= k
            assert sum(options[i][c][1] for i, c in enumerate(chosen)) == best[k]


def test_ties_go_to_the_earlier_option():
    best, picks = knapsack.solve([[(0, 1.0), (0, 1.0), (1, 1.0)]], 2)
    assert best.tolist() == [1.0, 1.0, 1.0] and knapsack.backtrack([[(0, 1.0), (0, 1.0), (1, 1.0)]], picks, 2) == [0]
