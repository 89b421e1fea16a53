"""Sphinx extension for the library reference (``book/library.md``).

Docstrings are rendered by autodoc + napoleon as reStructuredText, so ``:class:``/``:func:``
roles become cross-references, and the book is built with ``-W -n`` (nitpicky): every
reference must resolve. Intersphinx is unavailable offline, so references to names outside
xailib (torch, numpy, pandas, matplotlib, the standard library) are declared here as known
externals rather than resolved.
"""

EXTERNAL = [
    r"(torch|numpy|np|pandas|pd|matplotlib|plt|scipy|tqdm|typing|collections|pathlib|dataclasses)(\..*)?",
    r"(Tensor|Generator|Module|DataFrame|Series|Figure|Axes|ndarray|Path|Callable|Sequence|Iterator|Any)",
    r"(int|float|bool|str|dict|list|tuple|object|None|callable|optional|NamedTuple)",
]


def _add_ignores(app, config):
    existing = list(config.nitpick_ignore_regex or [])
    for kind in ("py:class", "py:obj", "py:func", "py:meth", "py:mod", "py:data", "py:attr", "py:exc"):
        for pattern in EXTERNAL:
            existing.append((kind, pattern))
    config.nitpick_ignore_regex = existing


def setup(app):
    app.connect("config-inited", _add_ignores)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
