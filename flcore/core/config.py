"""One validated configuration tree: defaults in one visible place, YAML files override them.

A parameter file in ``params/`` sets top-level keys (``dataset``, ``rounds``,
``aggregator`` ...) and, under a method's name, that method's options
(``leadfl: {alpha: 0.4}``). Command lines override with dotted keys
(``--set leadfl.alpha=0.2``). Everything is checked at load time: an unknown
key, a wrong type or an out-of-range value raises :class:`ConfigError` naming
the key and the valid choices.

The *resolved* configuration keeps the top-level keys, the always-present
sections (``model``, ``eval``, ``lr_decay``, ``split``) and the option sections
of the methods that are active (the chosen aggregator, attack, client defense
and schedule). Its canonical JSON hash is the run's identity: two runs with the
same resolved configuration are the same run. ``experiment`` only names the
folder of the store and is not part of the identity.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import re
import warnings

import yaml

from flcore.core import registry
from flcore.core.errors import ConfigError

#: ``experiment`` names a folder of the store: letters, digits, ``_ . -``, not starting with ``.``
#: or ``-`` (so never ``..``, an absolute path or a path with ``/``).
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
#: Store folders that hold analyses of runs, not runs (``results/analyses/<kind>/``).
RESERVED_EXPERIMENTS = ("analyses",)
SEED_MAX = 2**32 - 1  # numpy's RandomState takes seeds below 2**32

# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ModelOptions:
    """Which network, and (CIFAR-10) whether it ends in a softmax.

    ``output: softmax`` is the reference Cifar10CNN, whose last layer is a
    Softmax trained with CrossEntropyLoss (a double softmax that caps accuracy);
    ``logits`` removes it (the fix). Fashion-MNIST's network always outputs logits.
    ``name: auto`` picks the protocol's network for the dataset.
    """

    name: Literal["auto", "fmnist_cnn", "cifar10_cnn", "mnist_poisonedfl"] = "auto"
    output: Literal["softmax", "logits"] = "softmax"


@dataclass(frozen=True)
class EvalOptions:
    """Per-round evaluation.

    ``bn: train`` is the reference: BatchNorm stays in train mode when testing, so
    test batches of ``batch`` images use their own statistics and update the
    global model's running statistics and counters. ``bn: eval`` is the textbook
    evaluation with running statistics. ``test_samples`` evaluates a fixed subset
    of the test set (the same for every run; 10000 = all of it). ``every``
    evaluates every k-th round (the last round is always evaluated).
    """

    bn: Literal["train", "eval"] = "train"
    test_samples: int = 10000
    batch: int = 1000
    every: int = 1

    def check(self, cfg: "Config") -> None:
        _positive("eval.test_samples", self.test_samples)
        _positive("eval.batch", self.batch)
        _positive("eval.every", self.every)


@dataclass(frozen=True)
class LrDecayOptions:
    """Learning-rate schedule of benign clients: ``constant`` (the protocols),
    ``exponential`` (lr * gamma**round) or ``step`` (lr * gamma**(round // every)),
    never below ``min_lr``."""

    kind: Literal["constant", "exponential", "step"] = "constant"
    gamma: float = 1.0
    every: int = 1
    min_lr: float = 0.0

    def check(self, cfg: "Config") -> None:
        if not (0 < self.gamma <= 1):
            raise ConfigError(f"lr_decay.gamma must be in (0, 1], got {self.gamma}")
        _positive("lr_decay.every", self.every)
        _nonneg("lr_decay.min_lr", self.min_lr)


@dataclass(frozen=True)
class SplitOptions:
    """How training data is divided among clients.

    ``iid`` is the reference's strided split: client r (1-based) holds training
    indices r, r+N, r+2N, ... (index 0 is never used). ``bias`` is PoisonedFL's
    non-IID split: clients are put in 10 groups; a sample of label l goes to
    group l with probability ``bias`` and to another group uniformly otherwise,
    then uniformly to a client of the group.
    """

    kind: Literal["iid", "bias"] = "iid"
    bias: float = 0.5

    def check(self, cfg: "Config") -> None:
        if not (0 <= self.bias <= 1):
            raise ConfigError(f"split.bias must be in [0, 1], got {self.bias}")


SECTIONS = {"model": ModelOptions, "eval": EvalOptions, "lr_decay": LrDecayOptions, "split": SplitOptions}

# --------------------------------------------------------------------------- top level


@dataclass(frozen=True)
class Config:
    """Top-level configuration. Defaults are the LeadFL paper protocol on Fashion-MNIST."""

    experiment: str = "adhoc"
    profile: Literal["paper", "default", "smoke"] = "paper"
    dataset: Literal["fmnist", "cifar10"] = "fmnist"
    rounds: int = 80
    seed: int = 0
    clients: int = 100
    clients_per_round: int = 10
    malicious_clients: int = 25
    local_epochs: int = 10
    batch_size: int = 16
    lr: float = 0.01
    momentum: float = 0.1
    server_lr: float = 1.0
    schedule: str = "paper"
    attack: str = "backdoor"
    client_defense: str = "none"
    aggregator: str = "multikrum"
    # "full": aggregate the whole state (parameters, BN running statistics and
    # BN batch counters) as the reference does; "trainable": parameters only
    # (BN running statistics are then averaged over all selected clients).
    aggregate_state: Literal["full", "trainable"] = "full"
    model: ModelOptions = field(default_factory=ModelOptions)
    eval: EvalOptions = field(default_factory=EvalOptions)
    lr_decay: LrDecayOptions = field(default_factory=LrDecayOptions)
    split: SplitOptions = field(default_factory=SplitOptions)
    # options of the active methods, keyed by method name
    methods: dict = field(default_factory=dict)

    def options(self, name: str):
        """Options dataclass of the active method ``name`` (None if it has none)."""
        return self.methods.get(name)

    @property
    def active(self) -> dict[str, str]:
        return {"schedule": self.schedule, "attack": self.attack,
                "client_defense": self.client_defense, "aggregator": self.aggregator}

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            if f.name == "methods":
                continue
            v = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
        for name, opts in sorted(self.methods.items()):
            out[name] = dataclasses.asdict(opts) if opts is not None else {}
        return out

    def identity(self) -> dict:
        d = self.to_dict()
        d.pop("experiment")
        return d

    @property
    def hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


TOP_LEVEL = {f.name for f in fields(Config)} - {"methods"}

# --------------------------------------------------------------------------- loading


def load(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """Load a YAML parameter file (or defaults when ``path`` is None), apply
    ``key=value`` overrides (list of strings) or a dict of dotted keys, validate."""
    raw: dict = {}
    if path is not None:
        raw = read_yaml(path)
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            set_dotted(raw, key, value)
    else:
        for item in overrides or []:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key=value (e.g. leadfl.alpha=0.2)")
            key, text = item.split("=", 1)
            set_dotted(raw, key.strip(), _parse_scalar(text))
    return from_dict(raw)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key repeated in one mapping is an error (YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {key!r} (first set at line {first.line + 1}); set each key once",
                    key_node.start_mark)
        return super().construct_mapping(node, deep)


def safe_load_unique(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys."""
    loader = _UniqueKeyLoader(text)  # a SafeLoader subclass: plain data only, never arbitrary objects
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> dict:
    """A parameter file's top-level mapping; an empty file, duplicate keys or bad YAML are errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameter file {str(path)!r} not found")
    try:
        data = safe_load_unique(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"malformed YAML in {path}: {' '.join(str(e).split())}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a YAML parameter file is UTF-8 text)") from None
    except OSError as e:
        raise ConfigError(f"parameter file {str(path)!r} cannot be read: {e.strerror}") from None
    if data is None:
        raise ConfigError(f"{path}: the parameter file is empty; set at least the keys that differ from the "
                          f"defaults (e.g. dataset: fmnist), or copy params/smoke.yaml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def _parse_scalar(text: str) -> Any:
    """Value of a ``--set`` override: true/false, a number, a YAML list/mapping, or a string.

    Unlike YAML 1.1, words such as ``off``/``yes`` stay strings."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    if t[:1] in "[{":
        try:
            return safe_load_unique(t)
        except yaml.YAMLError:
            raise ConfigError(f"malformed value {text!r} in an override") from None
    return t


def set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {key!r}: {p!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def _all_method_options() -> dict[str, type | None]:
    out = {}
    for family in registry.FAMILIES:
        for name, m in registry.methods(family).items():
            out[name] = m.options
    return out


def from_dict(raw: dict, check_unused_options: bool = True) -> Config:
    """The validated configuration of a raw mapping (a parameter file with its overrides).

    ``check_unused_options``: range-check the options of methods the run does not use
    and warn about them (:func:`check_unused`). A sweep passes False: its base holds
    the options of every case, and it checks them over its whole grid instead."""
    if not isinstance(raw, dict):
        raise ConfigError(f"a configuration must be a mapping of keys to values, got {raw!r}")
    method_opts = _all_method_options()
    top, sections, methods_raw = {}, {}, {}
    for key, value in raw.items():
        if key in SECTIONS:
            sections[key] = value
        elif key in TOP_LEVEL:
            top[key] = value
        elif key in method_opts:
            methods_raw[key] = value
        else:
            valid = sorted(TOP_LEVEL | set(SECTIONS) | {k for k, v in method_opts.items() if v})
            raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(valid)}")

    kwargs = {}
    for f in fields(Config):
        if f.name in top:
            kwargs[f.name] = _coerce(f.name, f.type, top[f.name], Config)
    for name, cls in SECTIONS.items():
        kwargs[name] = _build(name, cls, sections.get(name, {}))

    cfg = Config(**kwargs)
    # active methods: names must be registered
    for family, name in cfg.active.items():
        registry.get(family, name)
    # option sections: validate every section given, keep the active ones
    methods, unused = {}, {}
    active_names = set(cfg.active.values())
    for name, value in methods_raw.items():
        cls = method_opts[name]
        if cls is None:
            raise ConfigError(f"method {name!r} has no options; remove the {name!r} section")
        opts = _build(name, cls, value)
        if name in active_names:
            methods[name] = opts
        else:
            unused[name] = opts
    for name in active_names:
        cls = method_opts[name]
        if cls is not None and name not in methods:
            methods[name] = cls()
    cfg = dataclasses.replace(cfg, methods=methods)
    check(cfg)
    if check_unused_options:
        check_unused(cfg, unused)
    return cfg


def method_family(name: str) -> str:
    """The family (aggregator, attack, client_defense, schedule) of a method with options."""
    for family in registry.FAMILIES:
        m = registry.methods(family).get(name)
        if m is not None and m.options is not None:
            return family
    raise ConfigError(f"{name!r} is not a method with options")


def check_unused(cfg: Config, unused: dict, warn: bool = True) -> None:
    """Options given for methods the run does not use.

    Policy: they are range-checked like the options of an active method (an
    invalid value is an error, checked as if the method were the run's, e.g. an
    aggregator's ``f`` against the clients aggregated per round), then ignored;
    valid ones give a warning (once per method section) when ``warn``. They are
    not part of the resolved configuration, so they never change a run's hash.
    In a sweep (:func:`flcore.experiments.sweep.expand`) the base holds the options of every
    case: a section is checked in the runs that use its method, and a section no
    run uses is checked against the first run that has it (and :func:`flcore.experiments.sweep.sweep`
    warns about it once).
    """
    for name, opts in unused.items():  # every check before any warning: an error is the only message
        if hasattr(opts, "check"):
            opts.check(clients_aggregated(cfg) if method_family(name) == "aggregator" else cfg)
    for name in sorted(unused) if warn else ():
        family = method_family(name)
        warnings.warn(f"options {name}.* are ignored: the run's {family} is {cfg.active[family]!r}, "
                      f"not {name!r}", UserWarning, stacklevel=3)


def _build(name: str, cls: type, value: Any):
    if not isinstance(value, dict):
        raise ConfigError(f"{name!r} must be a mapping of options, got {value!r}")
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, v in value.items():
        if key not in known:
            raise ConfigError(f"unknown option {name}.{key}; valid options of {name}: {', '.join(known)}")
        kwargs[key] = _coerce(f"{name}.{key}", known[key].type, v, cls)
    return cls(**kwargs)


def _coerce(key: str, annotation: Any, value: Any, owner: type) -> Any:
    hints = typing.get_type_hints(owner)
    name = key.split(".")[-1]
    tp = hints.get(name, annotation)
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key} = {value!r} is not valid; valid choices: {', '.join(map(str, choices))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key} must be finite, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


# --------------------------------------------------------------------------- checks


def _positive(key: str, value) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be positive, got {value}")


def _nonneg(key: str, value) -> None:
    if not value >= 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")


def check(cfg: Config) -> None:
    """Cross-field checks; each method's options check themselves too."""
    for key in ("rounds", "clients", "clients_per_round", "local_epochs", "batch_size"):
        _positive(key, getattr(cfg, key))
    _positive("lr", cfg.lr)
    _positive("server_lr", cfg.server_lr)
    if not (0 <= cfg.momentum < 1):
        raise ConfigError(f"momentum must be in [0, 1), got {cfg.momentum}")
    _nonneg("seed", cfg.seed)
    if cfg.seed > SEED_MAX:
        raise ConfigError(f"seed must be between 0 and {SEED_MAX}, got {cfg.seed}")
    if not EXPERIMENT_NAME.fullmatch(cfg.experiment):
        raise ConfigError(f"experiment must name a folder of the store (letters, digits, _ . -, not starting "
                          f"with . or -), got {cfg.experiment!r}")
    if cfg.experiment in RESERVED_EXPERIMENTS:
        raise ConfigError(f"experiment {cfg.experiment!r} is reserved for analyses of stored runs; choose another name")
    _nonneg("malicious_clients", cfg.malicious_clients)
    if cfg.malicious_clients > cfg.clients:
        raise ConfigError(f"malicious_clients ({cfg.malicious_clients}) cannot exceed clients ({cfg.clients})")
    if cfg.clients_per_round > cfg.clients:
        raise ConfigError(f"clients_per_round ({cfg.clients_per_round}) cannot exceed clients ({cfg.clients})")
    registry.get("attack", cfg.attack).fn.check(cfg)  # what the attack needs of the run (flcore.methods.attacks)
    model = resolve_model(cfg)
    if cfg.dataset == "cifar10" and model != "cifar10_cnn":
        raise ConfigError(f"model.name {model!r} takes 1x28x28 images; dataset cifar10 needs cifar10_cnn")
    if cfg.dataset == "fmnist" and model == "cifar10_cnn":
        raise ConfigError("model.name cifar10_cnn takes 3x32x32 images; dataset fmnist needs fmnist_cnn or mnist_poisonedfl")
    for sec in (cfg.eval, cfg.lr_decay, cfg.split):
        sec.check(cfg)
    for name, opts in cfg.methods.items():
        if opts is None or not hasattr(opts, "check"):
            continue
        # aggregation rules check their options against the clients they aggregate
        opts.check(clients_aggregated(cfg) if name == cfg.aggregator else cfg)


def clients_aggregated(cfg: Config) -> int:
    """Updates the server aggregates in a round (genuine plus the expected fake clients)."""
    return cfg.clients_per_round + registry.get("attack", cfg.attack).fn.expected_fakes(cfg)


def resolve_model(cfg: Config) -> str:
    if cfg.model.name != "auto":
        return cfg.model.name
    return "cifar10_cnn" if cfg.dataset == "cifar10" else "fmnist_cnn"
