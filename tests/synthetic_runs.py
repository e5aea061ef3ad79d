"""Synthetic stored-run documents (the shape of :mod:`flcore.storage.store`'s) for the tests of
:mod:`flcore.analysis` and :mod:`flcore.present`: nothing is trained."""


def doc(h="a" * 16, aggregator="multikrum", client="none", seed=0, rounds=None, schedule="paper", summary=None,
        label="Fashion-MNIST", **cfg):
    rounds = rounds if rounds is not None else [
        {"round": 0, "selected": list(range(1, 11)), "malicious": [1, 2, 3, 4, 5], "main_acc": 0.5,
         "backdoor_acc": 0.9, "agg_weights": [0.2] * 5 + [0.0] * 5, "fake_clients": 0},
        {"round": 1, "selected": list(range(11, 21)), "malicious": [], "main_acc": 0.7, "backdoor_acc": 0.4,
         "agg_weights": [0.0] * 5 + [0.2] * 5, "fake_clients": 0}]
    config = {"experiment": "t", "profile": "smoke", "dataset": "fmnist", "rounds": len(rounds), "local_epochs": 1,
              "seed": seed, "aggregator": aggregator, "client_defense": client, "schedule": schedule,
              "clients_per_round": 10, "eval": {"test_samples": 500}, **cfg}
    return {"hash": h, "config": config, "rounds": rounds, "status": "completed",
            "summary": summary or {"main_acc_final": 0.7, "backdoor_acc_avg": 0.65, "backdoor_acc_final": 0.4},
            "provenance": {"data_label": label, "wall_s": 2.0, "device": "cpu"}}
