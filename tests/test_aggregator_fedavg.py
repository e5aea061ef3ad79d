"""Tests of the FedAvg rule (flcore.methods.aggregators.fedavg)."""
from __future__ import annotations

import pytest
import torch

from flcore.methods import aggregators as agg
from test_aggregator_common import X5, close, t


def test_fedavg_hand():
    # weights 1,1,2,0,4 (sum 8): x = (1+3+2+0+44)/8, y = (1+1+4+0-12)/8
    out, w = agg.aggregate("fedavg", X5, t([1, 1, 2, 0, 4]))
    close(out, [6.25, -0.75])
    close(w, [0.125, 0.125, 0.25, 0.0, 0.5])
    with pytest.raises(ValueError):
        agg.fedavg(X5, torch.zeros(5))
