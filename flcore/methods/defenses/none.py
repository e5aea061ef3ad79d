"""The client defense ``none``: plain local momentum SGD (no client-side defense)."""
from __future__ import annotations

from flcore.core.registry import register

from .common import ClientBehaviour


@register("client_defense", "none", paper="no client-side defense")
class NoDefense(ClientBehaviour):
    """Plain local momentum SGD."""

    ragged = True  # only grad and sgd_step: rows of other sample counts may share its steps
