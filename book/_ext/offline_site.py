"""A site that works offline and loads without console errors.

MathJax 3 is served from the built site, so that formulas render without a network.

Sphinx's default ``mathjax_path`` points at a CDN: a reader without internet (or a page opened
from disk behind a firewall) sees raw ``\\(...\\)``. This extension copies MathJax's ``tex-chtml``
component, its CommonHTML fonts and the lazily loaded components (menu, accessibility, TeX
extensions) from the pip package ``sphinx-mathjax-offline`` (a book extra) into
``_build/html/_static/mathjax/`` and points ``mathjax_path`` there. The alternative bundles
(SVG output, MathML input) are left out: the book only uses TeX input with CommonHTML output.

It also drops a page's duplicated scripts: sphinx-thebe and sphinx-togglebutton register their
inline configuration twice (at two priorities), and the second ``const THEBE_JS_URL`` is a
JavaScript error on every page.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from sphinx.errors import ExtensionError

#: the package (a folder with a hyphen, found by its spec) that ships MathJax 3's files
PACKAGE = "sphinx-mathjax-offline"
#: the one combined bundle the book loads (TeX input, CommonHTML output, menu)
BUNDLE = "tex-chtml.js"
#: top-level bundles not needed by the book (other inputs/outputs), left out of the site
_UNUSED_BUNDLES = {
    "tex-chtml-full.js", "tex-chtml-full-speech.js", "tex-mml-chtml.js", "tex-mml-svg.js",
    "tex-svg.js", "tex-svg-full.js", "mml-chtml.js", "mml-svg.js", "node-main.js",
}


def mathjax_source() -> Path:
    """Folder holding MathJax 3's ``tex-chtml.js`` in the installed package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ExtensionError(
            f"offline_site: the pip package {PACKAGE!r} is not installed; it is in the "
            "project's 'book' extra (pip install -e '.[book]')")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax"
    if not (folder / BUNDLE).is_file():
        raise ExtensionError(f"offline_site: {folder / BUNDLE} is missing")
    return folder


def _set_path(app, config) -> None:
    mathjax_source()  # fail early and clearly when the package is missing
    config.mathjax_path = f"mathjax/{BUNDLE}"


def _copy(app, exc) -> None:
    if exc is not None or app.builder.format != "html":
        return
    src = mathjax_source()
    dst = Path(app.outdir) / "_static" / "mathjax"
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            if rel == Path(".") and name in _UNUSED_BUNDLES:
                continue
            target = dst / rel / name
            source = Path(root) / name
            if not target.exists() or target.stat().st_size != source.stat().st_size:
                shutil.copyfile(source, target)


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts, seen = context.get("script_files"), set()
    if not scripts:
        return
    unique = []
    for js in scripts:
        # same file (or same inline body) and attributes, whatever the priority it was added with
        key = (getattr(js, "filename", str(js)) or None,  # inline scripts: None or ""
               tuple(sorted((k, str(v)) for k, v in getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique  # in place: the list is the builder's, shared with later handlers


def setup(app):
    app.connect("config-inited", _set_path, priority=900)
    app.connect("html-page-context", _dedupe_scripts, priority=999)  # after every other handler
    app.connect("build-finished", _copy)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
