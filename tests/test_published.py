"""flcore.analysis.published: the shipped published numbers and the authors'-code records."""

from flcore.analysis import published


def test_published_file_has_the_protocol_numbers_with_sources():
    pub = published.published()
    assert "Table" in pub["leadfl"]["source"]
    fm = published.published_tables(pub, "fmnist")["multikrum"]
    assert fm["leadfl"] == {"main_acc_final": 87.9, "backdoor_acc_avg": 32.9, "backdoor_acc_final": 0.0}
    assert published.published_tables(pub, "cifar10")["multikrum"]["none"]["backdoor_acc_final"] == 80.5
    p = pub["poisonedfl"]
    assert p["reported"]["source"] and p["official_setting"]["source"]
    from flcore.core import config

    for item in p["official_setting"]["values"]:  # every official key is a configuration key
        top = item["key"].split(".")[0]
        assert top in config.TOP_LEVEL or top in config.SECTIONS or top == "poisonedfl", item


def test_authors_code_runs_are_the_shipped_records():
    from flcore.analysis.published import authors_code_runs

    runs = authors_code_runs()
    assert set(runs) == {"none", "leadfl"}
    assert runs["none"]["round"].tolist() == list(range(80))
    assert runs["leadfl"]["round"].tolist() == list(range(12))
    # the paper schedule's forced 5-of-10 rounds
    assert (runs["none"].set_index("round").loc[[0, 10, 12], "n_malicious"] == 5).all()
    assert runs["none"]["backdoor_acc"].between(0, 100).all()
