"""Display names of methods, settings and metrics, for tables and legends; the one place they are kept.

``tests/test_constants.py`` checks that every registered method has one.
"""
from __future__ import annotations

SERVER_NAMES = {"multikrum": "Multi-Krum", "bulyan_reference": "Bulyan (reference)", "bulyan": "Bulyan",
                "sparsefed": "SparseFed", "fedavg": "FedAvg", "median": "Median", "trimmed_mean": "Trimmed mean",
                "norm_clip": "Norm clipping", "krum": "Krum", "prodigy": "ProDiGy"}
CLIENT_NAMES = {"none": "None", "ldp": "LDP", "flwbc": "FL-WBC", "leadfl": "LeadFL"}
CLIENT_ORDER = ["none", "ldp", "flwbc", "leadfl"]
SERVER_ORDER = ["multikrum", "bulyan_reference", "bulyan", "sparsefed", "fedavg", "median", "trimmed_mean",
                "norm_clip", "krum", "prodigy"]
METRICS = {"main_acc_final": "main-task acc", "backdoor_acc_avg": "backdoor acc avg",
           "backdoor_acc_final": "backdoor acc final"}
DASH = "—"
# One word per concept: "paper protocol" is the profile (the papers' 10 local epochs),
# "LeadFL schedule" the client selection of the LeadFL code (schedule ``paper``).
SCHEDULE_NAMES = {"paper": "LeadFL schedule", "legacy": "legacy schedule", "periodic": "periodic bursts",
                  "random": "random selection", "consistent": "consistent selection"}
PROFILE_NAMES = {"smoke": "smoke profile", "default": "default profile", "paper": "paper protocol"}
ATTACK_NAMES = {"none": "no attack", "backdoor": "backdoor", "poisonedfl": "PoisonedFL"}
DATASET_NAMES = {"fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
#: Readable names of single configuration overrides (``key=value`` as written by
#: :func:`fmt_overrides`), for legends and tables; see :func:`override_label`.
OVERRIDE_NAMES = {"poisonedfl.selection=random": "random selection of the fakes",
                  "poisonedfl.partition=True": "dimension partitioning",
                  "schedule=legacy": "legacy schedule", "aggregate_state=trainable": "trainable parameters only",
                  "leadfl.variant=paper": "LeadFL as printed", "leadfl.variant=corrected": "LeadFL corrected",
                  "backdoor.trigger=clean": "in-range trigger"}
#: Readable names of configuration keys whose value is shown after the name.
KEY_NAMES = {"poisonedfl.noise_gamma": "noise scale γ", "poisonedfl.flip_p": "flip probability p",
             "poisonedfl.fake_clients": "fake clients", "prodigy.f": "ProDiGy's assumed f",
             "multikrum.f": "Multi-Krum f", "leadfl.alpha": "α", "local_epochs": "local epochs",
             "seed": "seed", "rounds": "rounds"}


def server_name(name: str) -> str:
    return SERVER_NAMES.get(name, name)


def client_name(name: str) -> str:
    return CLIENT_NAMES.get(name, name)


def schedule_name(name: str) -> str:
    return SCHEDULE_NAMES.get(name, name)
