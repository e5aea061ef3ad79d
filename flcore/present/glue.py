"""myst-nb glue for the chapters' prose: a value formatted for ``{glue:text}`` (:func:`glue_text`)
or glued as a plain number for a format spec in the text (:func:`glue_value`).
"""
from __future__ import annotations

from flcore.analysis.formats import fmt_num


def glue_text(key: str, value, digits: int = 1) -> None:
    """Glue ``value`` for ``{glue:text}`` in prose, formatted (numbers with ``digits``
    decimals, missing numbers as ``—``)."""
    from myst_nb import glue

    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = str(value)
    elif isinstance(value, int):
        text = str(value)
    else:
        text = fmt_num(value, digits)
    glue(key, text, display=False)


def glue_value(key: str, value) -> None:
    """Glue ``value`` unformatted for ``{glue:text}`key:.2f``` in prose: numpy numbers as plain
    Python numbers (booleans as text), strings as they are."""
    import numpy as np
    from myst_nb import glue

    if isinstance(value, (bool, np.bool_)):
        value = str(bool(value))
    elif isinstance(value, (int, np.integer)):
        value = int(value)
    elif isinstance(value, (float, np.floating)):
        value = float(value)
    glue(key, value, display=False)
