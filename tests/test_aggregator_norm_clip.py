"""Tests of norm clipping (flcore.methods.aggregators.norm_clip)."""
from __future__ import annotations

import pytest
import torch

from flcore.core.errors import ConfigError


def test_norm_clip_median_and_oracle():
    from flcore.methods.aggregators import NormClipOptions
    from flcore.core.registry import get

    u = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0], [60.0, 80.0]])  # norms 5, 1, 2, 100
    fn = get("aggregator", "norm_clip").fn
    out, _ = fn(u, torch.ones(4), NormClipOptions("median"), {})  # median norm 3.5 (mean of 2 and 5)
    expect = (torch.tensor([3.0, 4.0]) * 0.7 + torch.tensor([0.0, 1.0]) + torch.tensor([0.0, 2.0])
              + torch.tensor([0.6, 0.8]) * 3.5) / 4
    assert torch.allclose(out, expect, atol=1e-6)
    out, _ = fn(u, torch.ones(4), NormClipOptions("oracle"), {"n_genuine": 3})  # mean genuine norm 8/3
    thr = 8 / 3
    expect = (torch.tensor([0.6, 0.8]) * thr + torch.tensor([0.0, 1.0]) + torch.tensor([0.0, 2.0])
              + torch.tensor([0.6, 0.8]) * thr) / 4
    assert torch.allclose(out, expect, atol=1e-6)
    with pytest.raises(ConfigError, match="norm_clip.threshold"):
        NormClipOptions("mean").check(4)
