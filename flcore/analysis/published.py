"""What our runs are compared with, shipped in ``book/data/``: the published numbers and official
settings with their sources (``published.yaml``: :func:`published`, :func:`published_tables`),
LeadFL's alpha in the paper (:data:`PAPER_ALPHA`), and the per-round records of the LeadFL
authors' code run here (``authors_code/``: :func:`authors_code_runs`).
"""
from __future__ import annotations

from typing import Any

from flcore.analysis.params import read_params
from flcore.core.constants import ROOT


PUBLISHED = ROOT / "book" / "data" / "published.yaml"


def published() -> dict:
    """``book/data/published.yaml``: published numbers and official settings, with their sources."""
    return read_params(PUBLISHED)


def published_tables(pub: dict, dataset: str) -> dict:
    """``{server: {client: {metric: value}}}`` of the published LeadFL table of ``dataset``."""
    return ((pub.get("leadfl") or {}).get("tables") or {}).get(dataset, {}).get("cells", {})


#: LeadFL's alpha in the paper, per dataset (the protocol spec): the prose compares the
#: published LeadFL cell with our runs at this alpha (the tables show every alpha run).
PAPER_ALPHA = {"fmnist": 0.4, "cifar10": 0.25}
#: Per-round records of the LeadFL authors' code run unchanged on a machine like ours
#: (``book/data/authors_code/README.md``): an external anchor, never one of our runs.
AUTHORS_CODE = ROOT / "book" / "data" / "authors_code"
AUTHORS_CODE_LABEL = "authors' code, run here (chaoyitud/LeadFL 06ecc98)"


def authors_code_runs() -> dict[str, Any]:
    """The authors'-code runs as per-round frames keyed by client defense (``none``,
    ``leadfl``): columns ``round``, ``n_malicious``, ``main_acc``, ``backdoor_acc`` (%),
    ``krum_kept_malicious``, ``seconds``."""
    import pandas as pd

    out = {}
    for path in sorted(AUTHORS_CODE.glob("authors_code_*_multikrum_*rounds.csv")):
        defense = path.name.split("_")[2]
        out[defense] = pd.read_csv(path)[["round", "n_malicious", "main_acc", "backdoor_acc",
                                          "krum_kept_malicious", "seconds"]]
    return out
