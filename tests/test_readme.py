"""The README's "Where to find a method" table lists every registered method, under its family,
with the file that implements it, so that it cannot go stale."""
import inspect
import re
from pathlib import Path

from flcore.core import config
from flcore.core.constants import ROOT
from flcore.core import registry
from flcore.core.registry import FAMILIES


def readme_table() -> dict[str, dict[str, str]]:
    """``{family: {name: file}}`` read off the README's table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Where to find a method", 1)[1].split("\n## ", 1)[0]
    out: dict[str, dict[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("family", "---") or set(cells[0]) <= {"-"}:
            continue
        family, names, file = cells
        for name in re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", names)):  # "(variants ...)" are options
            out.setdefault(family, {})[name] = file.strip("`")
    return out


def test_readme_lists_every_registered_method_with_its_file():
    table = readme_table()
    assert set(table) == set(FAMILIES)
    for family in FAMILIES:
        registered = {name: Path(inspect.getsourcefile(m.fn)).resolve().relative_to(ROOT).as_posix()
                      for name, m in registry.methods(family).items()}
        assert table[family] == registered, f"README's {family} rows differ from the registry"
