"""flcore.present.glue: the values glued for the chapters' prose (myst-nb's glue replaced by a recorder)."""
import math

import numpy as np
import pytest

from flcore.core.names import DASH
from flcore.present import glue


@pytest.fixture
def glued(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    out = {}
    monkeypatch.setattr(myst_nb, "glue", lambda key, value, display=True: out.update({key: (value, display)}))
    return out


def test_glue_text_formats_numbers_and_marks_missing_ones(glued):
    glue.glue_text("a", 1.234)
    glue.glue_text("b", 1.234, digits=2)
    glue.glue_text("c", None)
    glue.glue_text("d", float("nan"))
    glue.glue_text("e", 3)
    glue.glue_text("f", True)
    glue.glue_text("g", "words")
    assert glued == {"a": ("1.2", False), "b": ("1.23", False), "c": (DASH, False), "d": (DASH, False),
                     "e": ("3", False), "f": ("True", False), "g": ("words", False)}


def test_glue_value_keeps_numbers_as_plain_python_numbers(glued):
    glue.glue_value("x", np.float32(0.5))
    glue.glue_value("n", np.int64(4))
    glue.glue_value("b", np.bool_(True))
    glue.glue_value("s", "text")
    assert glued["x"] == (0.5, False) and type(glued["x"][0]) is float
    assert glued["n"] == (4, False) and type(glued["n"][0]) is int
    assert glued["b"] == ("True", False) and glued["s"] == ("text", False)
    glue.glue_value("nan", float("nan"))
    assert math.isnan(glued["nan"][0])
