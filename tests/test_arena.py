"""The arena planner, tested by its invariant: no two live tensors overlap."""
import numpy as np
import pytest

from mobile_engine.planning.arena import ALIGN, Lifetime, plan_offsets


def _check(lifetimes, offsets, total):
    names = list(lifetimes)
    for name in names:
        assert offsets[name] % ALIGN == 0
        assert offsets[name] + lifetimes[name].nbytes <= total
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            la, lb = lifetimes[a], lifetimes[b]
            if la.overlaps(lb):
                a0, a1 = offsets[a], offsets[a] + la.nbytes
                b0, b1 = offsets[b], offsets[b] + lb.nbytes
                assert a1 <= b0 or b1 <= a0, f"{a} and {b} are live together and overlap"


@pytest.mark.parametrize("seed", range(20))
def test_random_lifetimes_never_overlap(seed):
    rng = np.random.default_rng(seed)
    lifetimes = {}
    for i in range(int(rng.integers(1, 60))):
        first = int(rng.integers(-1, 40))
        lifetimes[f"t{i}"] = Lifetime(first, first + int(rng.integers(0, 10)),
                                      int(rng.integers(1, 5000)))
    offsets, total = plan_offsets(lifetimes)
    _check(lifetimes, offsets, total)
    # a plan never needs more than all tensors side by side
    assert total <= sum((lt.nbytes + ALIGN - 1) // ALIGN * ALIGN for lt in lifetimes.values())


def test_a_chain_reuses_memory():
    # x0 -> x1 -> x2 -> x3: each tensor only overlaps its neighbours, so two slots suffice
    lifetimes = {f"x{i}": Lifetime(i - 1, i, 1024) for i in range(4)}
    offsets, total = plan_offsets(lifetimes)
    _check(lifetimes, offsets, total)
    assert total == 2 * 1024
