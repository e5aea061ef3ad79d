"""flcore.analysis.configs: run configurations as plain dicts, on synthetic stored-run documents."""

from flcore.analysis import configs, labels
from synthetic_runs import doc


def test_flatten_get_diff_fmt():
    assert configs.flatten({"a": {"b": 1}, "c": 2}) == {"a.b": 1, "c": 2}
    assert configs.get({"a": {"b": 1}}, "a.b") == 1 and configs.get({"a": {}}, "a.b", 5) == 5
    assert configs.diff({"a": {"b": 1}, "experiment": "x"}, {"a": {"b": 2}}) == {"a.b": 1}
    assert labels.fmt_overrides({"leadfl.alpha": 0.0, "lr_decay": {"kind": "exponential"}}) == \
        "leadfl.alpha=0.0, lr_decay={kind: exponential}"


def test_cell_variants_split_settings_but_not_seeds():
    docs = [doc(h="1" * 16, client="leadfl", leadfl={"alpha": 0.25}), doc(h="2" * 16, client="leadfl", seed=1,
                                                                        leadfl={"alpha": 0.25}),
            doc(h="3" * 16, client="leadfl", leadfl={"alpha": 0.15}), doc(h="4" * 16)]
    v = configs.cell_variants(docs)
    assert v == ["alpha=0.25", "alpha=0.25", "alpha=0.15", ""]
