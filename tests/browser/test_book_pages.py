"""The rendered book in a real browser, offline: every page of the built site opened from disk.

Per page: no raw TeX left in the visible text (MathJax is served from ``_static``), every image
loaded, no console error, no failed request (the network is blocked), and each chapter page shows
at least one table and one figure. A full-page screenshot of each page goes to
``_build/screenshots/book/``. The site is the one ``make check-book`` renders from the committed
outputs (``_build/check/_build/html``), else ``make book``'s ``_build/html``; ``XAILIB_SITE``
overrides.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from browser_support import ROOT, SHOTS, PageLog

CANDIDATES = [ROOT / "_build" / "check" / "_build" / "html", ROOT / "_build" / "html"]


def site_dir() -> Path | None:
    if os.environ.get("XAILIB_SITE"):
        return Path(os.environ["XAILIB_SITE"])
    return next((c for c in CANDIDATES if (c / "index.html").is_file()), None)


def pages() -> list[Path]:
    site = site_dir()
    if site is None:
        return []
    return sorted(p for p in site.rglob("*.html")
                  if not {"_static", "_sources", "_images"} & set(p.relative_to(site).parts))


def chapter_names() -> set[str]:
    """Chapters are ``notebooks/<name>.ipynb`` (paired with ``<name>.md`` or not)."""
    folder = ROOT / "notebooks"
    return {p.stem for p in folder.glob("*.ipynb")} | {p.stem for p in folder.glob("*.md")}


# What the reader sees: text outside code, scripts and rendered formulas, on visible elements.
RAW_TEX_JS = r"""
() => {
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "TEXTAREA", "MJX-CONTAINER", "NOSCRIPT"]);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const bad = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let el = n.parentElement, hidden = false, skipped = false;
    for (let a = el; a; a = a.parentElement) { if (skip.has(a.tagName)) { skipped = true; break; } }
    if (skipped || !el || el.getClientRects().length === 0) continue;
    const t = n.textContent;
    for (const tok of ["\\(", "\\)", "\\[", "\\]", "$$"]) {
      const i = t.indexOf(tok);
      if (i >= 0) { bad.push(t.slice(Math.max(0, i - 40), i + 40)); break; }
    }
  }
  return bad;
}
"""

STATS_JS = r"""
() => ({
  mathSources: document.querySelectorAll("span.math, div.math").length,
  mathRendered: document.querySelectorAll("mjx-container").length,
  brokenImages: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 120)),
  images: document.images.length,
  figures: document.querySelectorAll(".cell_output img, figure img").length,
  tables: document.querySelectorAll(".cell_output table, article table").length,
})
"""


def wait_for_math(page) -> None:
    page.wait_for_function(
        "() => !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise)",
        timeout=30_000)
    page.evaluate("() => window.MathJax ? window.MathJax.startup.promise.then(() => true) : true")
    page.evaluate("() => document.fonts.ready.then(() => true)")


def test_site_is_built():
    if site_dir() is None:
        pytest.skip("SKIPPED: no built site (make check-book or make book first)")
    names = {p.stem for p in pages() if p.parent.name == "notebooks"}
    assert chapter_names() <= names, f"chapters missing from the site: {chapter_names() - names}"


@pytest.mark.parametrize("path", pages(), ids=lambda p: str(p.relative_to(site_dir())))
def test_page_renders_offline(browser, path):
    site = site_dir()
    rel = path.relative_to(site)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log = PageLog(page)
    t0 = time.perf_counter()
    page.goto(path.as_uri(), wait_until="load")
    if 'http-equiv="Refresh"' in path.read_text(errors="replace")[:500]:  # index.html redirects
        page.wait_for_url(lambda url: url != path.as_uri())
        page.wait_for_load_state("load")
    wait_for_math(page)
    stats = page.evaluate(STATS_JS)
    raw = page.evaluate(RAW_TEX_JS)
    shot = SHOTS / "book" / rel.with_suffix(".png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    print(f"{rel}: {time.perf_counter() - t0:.2f} s, {stats}")

    assert not log.errors, f"{rel}: {log.errors[:5]}"
    assert not raw, f"{rel}: raw TeX in the visible text: {raw[:5]}"
    if stats["mathSources"]:
        assert stats["mathRendered"] > 0, f"{rel}: {stats['mathSources']} formulas, none rendered by MathJax"
    assert not stats["brokenImages"], f"{rel}: images not loaded: {stats['brokenImages']}"
    if rel.parts[0] == "notebooks" and path.stem in chapter_names():
        assert stats["tables"] >= 1, f"{rel}: chapter page without a table"
        assert stats["figures"] >= 1, f"{rel}: chapter page without a figure"
