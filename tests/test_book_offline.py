"""The built HTML book works offline: local MathJax typesets, images and scripts are local.

Runs against an existing build in ``_build/html`` (``make book``, or
``jupyter-book build . -W -n --keep-going``); without one the tests are skipped.
``BOOK_HTML=/path/to/html`` points them at another build.

Each page is rendered in headless Chromium with every host name unresolvable,
so a page that still needed a CDN would fail here even on a networked machine.
The screenshots are kept as artefacts under ``_build/screenshots/`` (next to the
HTML folder).
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
SHOTS = HTML.parent / "screenshots"  # _build/screenshots for the default build

# (page, must contain typeset math)
PAGES = [
    ("book/intro.html", True),
    ("book/derivations.html", True),
    ("book/experiments/original_tables.html", False),
    ("book/experiments/explorer.html", False),
]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--window-size=1280,1800",
    "--virtual-time-budget=5000",
    # Offline for real: no host name resolves, so a CDN request cannot succeed.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def _chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class _Tags(HTMLParser):
    """Collects start tags as (name, attrs) and counts elements by class."""

    SKIP_TEXT = {"script", "style", "pre", "code", "textarea"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []  # prose text, outside scripts and code
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: (v or "") for k, v in attrs}))
        if tag in self.SKIP_TEXT:
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP_TEXT and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, {k: (v or "") for k, v in attrs}))

    def find(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]

    def with_class(self, cls: str) -> list[tuple[str, dict[str, str]]]:
        return [(t, a) for t, a in self.tags if cls in a.get("class", "").split()]


def _parse(text: str) -> _Tags:
    p = _Tags()
    p.feed(text)
    return p


def _is_external(url: str) -> bool:
    u = url.strip().lower()
    return u.startswith(("http://", "https://", "//", "ftp://"))


def _local_target(page: Path, url: str) -> Path:
    path = unquote(urlsplit(url).path)
    return (page.parent / path).resolve()


def _external_assets(tags: _Tags) -> list[str]:
    bad = [f"<script src={a['src']}>" for a in tags.find("script") if a.get("src") and _is_external(a["src"])]
    bad += [f"<link rel={a.get('rel')} href={a['href']}>" for a in tags.find("link")
            if a.get("href") and _is_external(a["href"])]
    bad += [f"<iframe src={a['src']}>" for a in tags.find("iframe") if a.get("src") and _is_external(a["src"])]
    return bad


@pytest.fixture(scope="module")
def chromium() -> str:
    if not (HTML / "index.html").exists():
        pytest.skip(f"no built book at {HTML}: run `make book` (or `jupyter-book build . -W -n --keep-going`) first")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium/Chrome executable found (set CHROMIUM=/path/to/chromium)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    return exe


def _render(exe: str, page: Path, shot: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", "--dump-dom",
               page.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"chromium failed on {page}: {proc.stderr[-2000:]}"
    assert "<html" in proc.stdout.lower(), f"chromium dumped no DOM for {page}"
    return proc.stdout


@pytest.mark.parametrize("rel,needs_math", PAGES, ids=[p for p, _ in PAGES])
def test_page_offline(chromium: str, rel: str, needs_math: bool) -> None:
    page = HTML / rel
    if not page.exists():
        if "experiments/" in rel and rel.endswith("explorer.html"):
            pytest.skip(f"{rel} not in this build")
        pytest.fail(f"{rel} missing from the build at {HTML}")
    source = page.read_text(encoding="utf-8")
    src_tags = _parse(source)

    # 1. The served HTML references no external script, stylesheet or frame,
    #    and every local script/stylesheet it references exists.
    assert not _external_assets(src_tags), f"{rel} loads external assets: {_external_assets(src_tags)}"
    for attrs, key in [(a, "src") for a in src_tags.find("script")] + [(a, "href") for a in src_tags.find("link")]:
        url = attrs.get(key, "")
        if not url or url.startswith(("data:", "#", "mailto:")):
            continue
        if key == "href" and "stylesheet" not in attrs.get("rel", "") and not url.split("?")[0].endswith(".js"):
            continue  # navigation links (next/prev/index/search) point to pages, checked elsewhere
        assert _local_target(page, url).exists(), f"{rel}: {key}={url} does not exist in the build"

    # 2. Render it (network unreachable) and keep the screenshot.
    shot = SHOTS / (rel.replace("/", "__").removesuffix(".html") + ".png")
    if shot.exists():
        shot.unlink()
    dom_text = _render(chromium, page, shot)
    assert shot.exists() and shot.stat().st_size > 10_000, f"no usable screenshot for {rel}"
    dom = _parse(dom_text)

    # 3. Nothing external was injected by scripts either.
    assert not _external_assets(dom), f"{rel} (rendered) loads external assets: {_external_assets(dom)}"

    # 4. MathJax (served from _static/mathjax) typeset every math element, without errors.
    n_math = len(src_tags.with_class("math"))
    n_typeset = len(dom.find("mjx-container"))
    if needs_math:
        assert n_math > 0, f"{rel} should contain math"
    if n_math:
        assert n_typeset >= n_math, f"{rel}: MathJax typeset {n_typeset} of {n_math} math elements"
    errors = [a for t, a in dom.tags if t == "mjx-merror" or "data-mjx-error" in a]
    assert not errors, f"{rel}: MathJax reported errors: {errors[:3]}"
    # Math that MyST failed to parse (e.g. display math without a blank line
    # before it) is left in the prose as raw dollar signs.
    prose = "".join(src_tags.text)
    assert "$" not in prose, f"{rel}: unparsed math near: {prose[max(0, prose.find('$') - 80):][:160]!r}"

    # 5. Every image is local and exists.
    for attrs in dom.find("img"):
        src = attrs.get("src", "")
        assert src, f"{rel}: <img> without src"
        if src.startswith("data:"):
            continue
        assert not _is_external(src), f"{rel}: external image {src}"
        assert _local_target(page, src).exists(), f"{rel}: image {src} does not exist in the build"

    # 6. Stored ipywidgets render from the local widget manager.
    if "application/vnd.jupyter.widget-view+json" in source:
        rendered = [a for _, a in dom.tags if "jupyter-widgets" in a.get("class", "").split()]
        assert rendered, f"{rel}: widget views were not rendered (local embed-amd.js not loaded?)"


# --------------------------------------------------------------------------- layout at 1280 px

#: Measures, once the page has loaded (MathJax and widgets included), every table and image
#: of the page against the content column, and, in the notebook outputs, whether each table
#: and figure is followed by its download links in the same cell. The result is written into
#: the page as JSON, which ``--dump-dom`` returns.
LAYOUT_SCRIPT = """
<script>
window.addEventListener("load", function () { setTimeout(function () {
  var main = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  var col = main.getBoundingClientRect();
  function scroller(el) {  // el or an ancestor inside the column that scrolls horizontally
    for (var e = el; e && e !== main; e = e.parentElement) {
      var ox = getComputedStyle(e).overflowX;
      if (ox === "auto" || ox === "scroll") return e;
    }
    return null;
  }
  function name(el) {
    var id = el.id ? "#" + el.id : "";
    var cls = el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : "";
    var src = el.tagName === "IMG" ? " " + (el.getAttribute("src") || "").slice(-40) : "";
    return el.tagName.toLowerCase() + id + cls + src;
  }
  var out = {column: [col.left, col.right], checked: 0, overflowing: [], without_links: [], links: []};
  main.querySelectorAll("table, img").forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return;  // not displayed
    out.checked += 1;
    var box = scroller(el);
    var b = box ? box.getBoundingClientRect() : r;
    if (b.right > col.right + 1 || b.left < col.left - 1) {
      out.overflowing.push(name(el) + ": [" + Math.round(b.left) + ", " + Math.round(b.right) + "] px" +
                           (box ? " (its scrolling box)" : ""));
    }
    var cell = el.closest("div.cell");
    // widget views (the explorer's saved controls) are not figures of the book
    if (cell && el.closest("div.cell_output") && !el.closest(".jupyter-widgets, .widget-output")) {
      var after = Array.prototype.some.call(cell.querySelectorAll("p.flcore-downloads"), function (p) {
        return el.compareDocumentPosition(p) & Node.DOCUMENT_POSITION_FOLLOWING;
      });
      if (!after) out.without_links.push(name(el));
    }
  });
  main.querySelectorAll("p.flcore-downloads a").forEach(function (a) { out.links.push(a.getAttribute("href")); });
  var pre = document.createElement("pre");
  pre.id = "flcore-layout-report";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 1500); });
</script>
"""
# the theme's scripts may add attributes to every <pre> (tabindex) after the report is appended
LAYOUT_REPORT = re.compile(r'<pre id="flcore-layout-report"[^>]*>(.*?)</pre>', re.S)


def _book_pages() -> list[str]:
    """Every page of the built book (the chapters and appendices; not the search and index
    pages, nor the copied sources)."""
    if not HTML.exists():
        return []
    skip = {"search.html", "genindex.html"}
    return sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")
                  if p.name not in skip and not any(part.startswith(("_", ".")) for part in p.relative_to(HTML).parts)
                  and "<body" in p.read_text(encoding="utf-8"))  # not the root's redirect stub


def _measure(exe: str, page: Path) -> dict:
    """The layout report of ``page`` rendered at 1280 px (a copy of it with the measuring
    script, next to it so that its relative links resolve; removed afterwards)."""
    text = page.read_text(encoding="utf-8")
    probe = page.with_name(f".layout-probe-{page.name}")
    probe.write_text(text.replace("</body>", LAYOUT_SCRIPT + "</body>"), encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                   "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()]  # runs the timers first
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    finally:
        probe.unlink()
    assert proc.returncode == 0, f"chromium failed on {page}: {proc.stderr[-2000:]}"
    m = LAYOUT_REPORT.search(proc.stdout)
    assert m, f"the layout script did not run on {page}"
    return json.loads(html.unescape(m.group(1)))


@pytest.mark.parametrize("rel", _book_pages() or ["book/intro.html"])
def test_no_table_or_figure_overflows_the_column_at_1280px(chromium: str, rel: str) -> None:
    """At a 1280 px wide window, every displayed table and image lies within the content
    column, or inside a box of the column that scrolls horizontally."""
    assert "--window-size=1280,1800" in CHROMIUM_FLAGS
    report = _measure(chromium, HTML / rel)
    assert report["column"][1] - report["column"][0] > 300, f"{rel}: no content column found: {report}"
    assert not report["overflowing"], f"{rel}: wider than the column {report['column']}: {report['overflowing']}"


EXPERIMENT_PAGES = sorted(p for p in _book_pages() if p.startswith("book/experiments/"))


@pytest.mark.parametrize("rel", EXPERIMENT_PAGES or ["book/experiments/selection.html"])
def test_experiment_pages_offer_each_table_and_figure_as_files(chromium: str, rel: str) -> None:
    """On every experiment page, each table and figure of the notebook outputs is followed by
    links to its files (CSV; PNG and SVG) and the command that regenerates them, and every
    linked file is in the build."""
    page = HTML / rel
    if not page.exists():
        pytest.skip(f"{rel} not in this build")
    report = _measure(chromium, page)
    assert not report["without_links"], f"{rel}: tables/figures without download links: {report['without_links']}"
    for href in report["links"]:
        assert not _is_external(href), f"{rel}: external download link {href}"
        assert _local_target(page, href).is_file(), f"{rel}: linked file {href} is not in the build"
    kinds = {Path(unquote(h)).suffix for h in report["links"]}
    if report["links"]:
        assert ".csv" in kinds or {".png", ".svg"} <= kinds, f"{rel}: links {report['links']}"
    source = page.read_text(encoding="utf-8")
    assert "python -m flcore.build.book notebooks" in source or not report["links"], f"{rel}: no regenerate command"
