"""The attack protocol (flcore.methods.attacks): every attack is a registered class built
``make(cfg, context)``; the engine asks it for the round's selection, who trains maliciously
and how, and the fake clients' updates, and knows no attack by name."""
import re

import numpy as np
import pytest
import torch

from flcore.core import config, registry
from flcore.core.constants import ROOT, fake_seed, selection_seed
from flcore.core.errors import ConfigError
from flcore.methods.attacks import Attack, AttackContext, Backdoor, BackdoorTraining
from flcore.methods.poisonedfl import PoisonedFL, PoisonedFLOptions, fakes_this_round, make_poisonedfl
from flcore.sim.engine import Selection

CONTEXT = AttackContext(malicious=frozenset({3, 5}), device=torch.device("cpu"))


def pfl_cfg(**over) -> config.Config:
    base = {"dataset": "fmnist", "model.name": "mnist_poisonedfl", "clients": 40, "clients_per_round": 10,
            "malicious_clients": 0, "rounds": 4, "schedule": "random", "attack": "poisonedfl",
            "aggregator": "fedavg", "aggregate_state": "trainable", "poisonedfl.fake_clients": 8,
            "poisonedfl.window": 2}
    return config.load(None, {**base, **over})


def test_every_attack_is_a_registered_attack_class():
    attacks = registry.methods("attack")
    assert set(attacks) == {"none", "backdoor", "poisonedfl"}
    assert attacks["none"].fn is Attack and attacks["backdoor"].fn is Backdoor and attacks["poisonedfl"].fn is PoisonedFL
    for m in attacks.values():
        assert issubclass(m.fn, Attack)


def test_no_attack_has_no_op_defaults():
    cfg = config.load(None, {"attack": "none"})
    a = Attack(cfg, CONTEXT)
    assert a.local_training is None and Attack.expected_fakes(cfg) == 0
    assert a.select(0, lambda: [1, 3, 5]) == ([1, 3, 5], 0)
    assert not any(a.is_malicious(c) for c in (1, 3, 5))
    assert a.fake_updates(0, 0, torch.zeros(4)) is None and a.record() is None
    a.observe(0, torch.zeros(4))


def test_backdoor_poisons_the_data_of_the_malicious_clients():
    cfg = config.load(None, {"attack": "backdoor"})
    a = Backdoor(cfg, CONTEXT)
    assert Backdoor.local_training is BackdoorTraining
    assert [a.is_malicious(c) for c in (1, 3, 5)] == [False, True, True]
    assert a.select(0, lambda: [1, 3]) == ([1, 3], 0) and a.record() is None
    with pytest.raises(ConfigError, match="attack 'backdoor' needs malicious_clients > 0"):
        config.load(None, {"attack": "backdoor", "malicious_clients": 0})


def test_poisonedfl_selects_fakes_and_crafts_their_updates():
    cfg = pfl_cfg()
    a = PoisonedFL(cfg, CONTEXT)
    assert PoisonedFL.expected_fakes(cfg) == 2 and config.clients_aggregated(cfg) == 12
    assert not a.is_malicious(3)  # its malicious clients (if any) train honestly
    # official selection: the schedule's clients, fakes_this_round on the run's own generator
    gen = torch.Generator().manual_seed(fake_seed(cfg.seed))
    for rnd in range(3):
        assert a.select(rnd, lambda: [7, 8]) == ([7, 8], fakes_this_round(8, 10 / 40, gen))
    # fake updates: the PoisonedFL state's, built on the first round for the given length
    ref = make_poisonedfl(6, PoisonedFLOptions(fake_clients=8, window=2), cfg.seed, "cpu")
    w = torch.linspace(-1, 1, 6)
    for rnd in range(3):
        assert torch.equal(a.fake_updates(rnd, 2, w), ref.craft(rnd, 2, w))
        w = w + 0.01 * (rnd + 1)
        a.observe(rnd, w)
        ref.observe(rnd, w)
        assert a.record() == ref.last_record


def test_poisonedfl_random_selection_draws_genuine_and_fake_clients_together():
    cfg = pfl_cfg(**{"poisonedfl.selection": "random"})
    a = PoisonedFL(cfg, CONTEXT)
    called = []
    selected, n_fake = a.select(1, lambda: called.append(1) or [])
    drawn = np.random.RandomState(selection_seed(1)).choice(48, 12, replace=False) + 1
    assert not called  # the schedule is not asked
    assert selected == [int(c) for c in drawn if c <= 40] and n_fake == int((drawn > 40).sum())


def test_selection_step_asks_the_run_s_attack():
    cfg = config.load(None, {"attack": "backdoor", "schedule": "paper"})
    select = Selection(cfg)
    assert isinstance(select.attack, Backdoor) and select.attack.context.malicious == frozenset(select.mal)
    selected, n_fake, is_mal = select(0)
    assert n_fake == 0 and is_mal == [c in select.mal for c in selected] and any(is_mal)
    none = Selection(config.load(None, {"attack": "none", "schedule": "paper"}))
    assert none(0)[0] == selected and not any(none(0)[2])


def test_the_engine_and_the_configuration_name_no_attack():
    """No comparison with an attack's name in flcore/sim or flcore/core: attacks act through
    their protocol (reading a method's own options section, ``cfg.options("backdoor")``, is fine)."""
    pattern = re.compile(r"""(==|!=|\bin\b)\s*\(?\s*["'](backdoor|poisonedfl)["']|["'](backdoor|poisonedfl)["']\s*(==|!=)""")
    found = []
    for pkg in ("sim", "core"):
        for path in sorted((ROOT / "flcore" / pkg).glob("*.py")):
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line) or "methods.poisonedfl" in line:
                    found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not found, "\n".join(found)
