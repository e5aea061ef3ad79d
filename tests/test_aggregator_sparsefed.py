"""Tests of SparseFed (flcore.methods.aggregators.sparsefed)."""
from __future__ import annotations

import pytest
import torch

from flcore.methods import aggregators as agg
from flcore.core.errors import ConfigError
from test_aggregator_common import close, t


def test_sparsefed_hand_two_rounds():
    # u0 = (3,4,0,0) has norm 5 -> clipped to (0.6,0.8,0,0); u1 = (0,0,0.5,0) is kept.
    # g = (0.3, 0.4, 0.25, 0); k = 2 of d = 4; rho = 0.5.
    x = t([[3, 4, 0, 0], [0, 0, 0.5, 0]])
    opts = {"k_fraction": 0.5, "clip": 1.0, "momentum": 0.5}
    state: dict = {}
    # round 1: m = g, e = g, top-2 = coords 1 and 0 -> (0.3, 0.4, 0, 0); e = m = (0,0,0.25,0)
    out, w = agg.aggregate("sparsefed", x, opts=opts, state=state)
    close(out, [0.3, 0.4, 0, 0])
    assert w is None
    close(state["error"], [0, 0, 0.25, 0])
    close(state["momentum"], [0, 0, 0.25, 0])
    # round 2: m = 0.5*(0,0,0.25,0) + g = (0.3,0.4,0.375,0); e = (0.3,0.4,0.625,0)
    # top-2 = coords 2 and 1 -> (0, 0.4, 0.625, 0); e = m = (0.3, 0, 0, 0)
    out, _ = agg.aggregate("sparsefed", x, opts=opts, state=state)
    close(out, [0, 0.4, 0.625, 0])
    close(state["error"], [0.3, 0, 0, 0])
    close(state["momentum"], [0.3, 0, 0, 0])


def test_sparsefed_without_momentum_is_error_feedback():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 20, generator=gen)
    opts = agg.SparseFedOptions(k_fraction=0.25, clip=0.5, momentum=0.0)
    state: dict = {}
    err = torch.zeros(20, dtype=torch.float64)
    applied = torch.zeros(20, dtype=torch.float64)
    for _ in range(3):
        out, _ = agg.aggregate("sparsefed", x, opts=opts, state=state)
        assert int((out != 0).sum()) == 5
        err = err + agg.clip_l2(x, 0.5).mean(0)
        applied += out.double()
        # what was applied plus what is left equals everything accumulated
        close(applied + state["error"], err, tol=1e-6)
    norms = torch.linalg.vector_norm(agg.clip_l2(x * 100, 0.5), dim=1)
    close(norms, [0.5] * 5)
    assert torch.equal(agg.clip_l2(torch.zeros(2, 3), 1.0), torch.zeros(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("opts, n, pattern", [
    (agg.SparseFedOptions(k_fraction=0.0), 10, r"sparsefed\.k_fraction = 0\.0 .*\(0, 1\]"),
    (agg.SparseFedOptions(clip=0.0), 10, r"sparsefed\.clip = 0\.0"),
    (agg.SparseFedOptions(momentum=1.0), 10, r"sparsefed\.momentum = 1\.0 .*\[0, 1\)"),
])
def test_check_errors(opts, n, pattern):
    with pytest.raises(ConfigError, match=pattern):
        opts.check(n)
