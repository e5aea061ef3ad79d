"""A chapter page of the book as its notebook writes it: :func:`start_page` (the book's matplotlib
style and an empty downloads folder for the page), :func:`show_table` and :func:`show_figure`
(display a table or figure and, on a page, write it as CSV or PNG and SVG with download
links), and the command that regenerates the page (:func:`regenerate_command`).
"""
from __future__ import annotations

from flcore.core.constants import ROOT
from flcore.present.figures import FIG_DPI, FIG_PAD_IN, FIG_WIDTH_IN, fit_width, use_book_style


#: Files offered for download: ``_build/extra`` is Sphinx's ``html_extra_path`` (set up by the
#: :mod:`flcore.build.book` extension), copied into the root of the HTML build, so the files of page
#: ``<page>`` end up at ``_build/html/downloads/<page>/``.
EXTRA = ROOT / "_build" / "extra"
DOWNLOADS = EXTRA / "downloads"
#: From a chapter page (``book/experiments/<page>.html``) to the downloads folder.
DOWNLOADS_URL = "../../downloads"
_PAGE: dict = {"name": None, "profile": "default", "names": set()}


def start_page(name: str, profile: str = "default") -> None:
    """Begin the book page ``name`` (a chapter of ``book/experiments``): the book's matplotlib
    style, and an empty downloads folder for the tables and figures that :func:`show_table`
    and :func:`show_figure` offer on the page."""
    import shutil

    use_book_style()
    folder = DOWNLOADS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _PAGE.update(name=name, profile=profile, names=set())


def regenerate_command(page: str | None = None, profile: str | None = None) -> str:
    """The command that executes the page's notebook again (from the stored runs) and so
    rewrites its tables, figures and files."""
    page = page or _PAGE["name"]
    profile = profile or _PAGE["profile"]
    return f"python -m flcore.build.book notebooks --profile {profile} --only {page}"


def _file_name(stem: str | None, kind: str) -> str:
    """A unique file stem on the current page: ``stem`` made file-safe, else ``<kind>-<n>``."""
    import re

    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") if stem else ""
    base = base or f"{kind}-{sum(1 for n in _PAGE['names'] if n.startswith(kind + '-')) + 1}"
    name, i = base, 2
    while name in _PAGE["names"]:
        name, i = f"{base}-{i}", i + 1
    _PAGE["names"].add(name)
    return name


def download_links(files: list[tuple[str, str]]):
    """HTML: links to ``(label, file name)`` in the page's downloads folder and the command
    that regenerates them."""
    import html

    from IPython.display import HTML

    page = _PAGE["name"]
    links = " · ".join(f'<a href="{DOWNLOADS_URL}/{page}/{html.escape(f)}" download>{html.escape(label)}</a>'
                       for label, f in files)
    return HTML(f'<p class="flcore-downloads">Download: {links}. Regenerate: '
                f"<code>{html.escape(regenerate_command())}</code></p>")


def show_table(df, caption: str, index: bool = True, name: str | None = None, data=None,
               docs: list[dict] | None = None) -> None:
    """Display a caption (bold, as Markdown) and the table (a DataFrame or a pandas Styler);
    on a page begun with :func:`start_page`, also write the table as CSV (``data`` instead,
    when given: the numbers behind formatted cells), with ``docs`` the per-run summary of those
    runs (:func:`flcore.analysis.export.tables`), and show links to the files."""
    import pandas as pd
    from IPython.display import Markdown, display
    from pandas.io.formats.style import Styler

    frame = df.data if isinstance(df, Styler) else df
    display(Markdown(f"**{caption}**"))
    with pd.option_context("display.max_colwidth", None, "display.max_rows", 500):
        if isinstance(df, Styler):
            display(df if index else df.hide(axis="index"))
        else:
            display(df if index else df.style.hide(axis="index"))
    if _PAGE["name"] is None:
        return
    stem = _file_name(name, "table")
    folder = DOWNLOADS / _PAGE["name"]
    (data if data is not None else frame).to_csv(folder / f"{stem}.csv", index=index if data is None else True)
    files = [("table (CSV)", f"{stem}.csv")]
    if docs:
        from flcore.analysis.export import tables

        tables(docs)[1].to_csv(folder / f"{stem}-runs.csv", index=False)
        files.append(("its runs (CSV)", f"{stem}-runs.csv"))
    display(download_links(files))


def show_figure(fig, name: str | None = None) -> None:
    """Show ``fig`` at the width of the book's column (:func:`flcore.present.figures.fit_width`); on a page begun with
    :func:`start_page`, also save it as PNG and SVG with links to the files. Closes ``fig``
    (instead of ``plt.show()``)."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    for text in [getattr(fig, "_suptitle", None)] + [ax.title for ax in fig.axes]:
        if text is not None and text.get_text():
            text.set_wrap(True)  # a long title wraps instead of widening the figure
    fit_width(fig, FIG_WIDTH_IN - 2 * FIG_PAD_IN)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=2 * FIG_DPI, bbox_inches="tight", pad_inches=FIG_PAD_IN)
    png = buf.getvalue()
    width_px = int.from_bytes(png[16:20], "big") // 2  # the PNG header's width, at FIG_DPI
    display(Image(data=png, format="png", width=width_px))
    if _PAGE["name"] is not None:
        stem = _file_name(name, "figure")
        folder = DOWNLOADS / _PAGE["name"]
        (folder / f"{stem}.png").write_bytes(png)
        fig.savefig(folder / f"{stem}.svg", format="svg", bbox_inches="tight", pad_inches=FIG_PAD_IN,
                    metadata={"Date": None})
        display(download_links([("figure (PNG)", f"{stem}.png"), ("(SVG)", f"{stem}.svg")]))
    plt.close(fig)
