"""The shared constants: the seeds that decide stored numbers keep the reference's values and
stay distinct per (run seed, client); importing the module imports nothing heavy."""
import subprocess
import sys

import numpy as np

from flcore.core import constants as K


def test_selection_seed_is_the_reference_round_plus_100():
    assert [K.selection_seed(r) for r in (0, 1, 79)] == [100, 101, 179]
    # the paper schedule's round-0 draw depends on it (reference: np.random.seed(round + 100))
    assert np.random.RandomState(K.selection_seed(0)).randint(0, 2**31) == np.random.RandomState(100).randint(0, 2**31)


def test_client_streams_are_distinct_across_seeds_and_clients():
    seeds = {K.client_seed(s, r) for s in range(10) for r in range(1, 1201 + 240)}
    assert len(seeds) == 10 * (1200 + 240)
    assert K.client_seed(0, 1) == 11 and K.client_seed(2, 5) == 2 * 100_003 + 15


def test_other_streams():
    assert K.fake_seed(3) == 10 and K.hessian_seed(1, 4) == 1_000_007
    assert K.EVAL_SUBSET_SEED == 12345 and K.MALICIOUS_SET_SEED == 0 and K.CIFAR_JPEG_ORDER_SEED == 0
    assert K.PROFILES == ("smoke", "default", "paper")
    assert (K.ROOT / "params").is_dir() and (K.ROOT / "flcore" / "core" / "constants.py").is_file()


def test_importing_the_constants_imports_no_numerics():
    code = ("import sys, importlib.util, pathlib; spec = importlib.util.spec_from_file_location("
            f"'c', {str(K.ROOT / 'flcore' / 'core' / 'constants.py')!r}); m = importlib.util.module_from_spec(spec); "
            "spec.loader.exec_module(m); print(sorted(k for k in ('torch', 'numpy', 'subprocess') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_registered_method_with_a_table_column_has_a_display_name():
    """The display names (flcore/core/names.py) cover the registry: a new aggregator, client
    defense, schedule or attack shows up in tables under a readable name."""
    from flcore.core import names, registry

    tables = {"aggregator": names.SERVER_NAMES, "client_defense": names.CLIENT_NAMES,
              "schedule": names.SCHEDULE_NAMES, "attack": names.ATTACK_NAMES}
    for family, table in tables.items():
        missing = set(registry.methods(family)) - set(table)
        assert not missing, f"{family} without a display name: {sorted(missing)}"
