"""Sphinx extension: render library docstrings verbatim.

xailib's docstrings are written for ``help()`` and IDEs, with formulas in plain Unicode
(``(N, *F)``, ``Φ* = (E[IIᵀ])⁻¹ E[IΔf]``). Rendering them as literal blocks keeps them
exactly as written and stops reStructuredText from reading ``*`` as emphasis.
"""


def _literal(app, what, name, obj, options, lines):
    if not lines:
        return
    body = [("    " + line) if line.strip() else "" for line in lines]
    lines[:] = ["::", ""] + body + [""]


def setup(app):
    app.connect("autodoc-process-docstring", _literal)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
