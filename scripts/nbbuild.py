"""Notebook builder shared by the chapter generators (``scripts/make_*.py``).

A generator lists a chapter's cells with ``md(...)`` and ``code(...)`` and calls ``save(name)``,
which writes ``notebooks/<name>`` (then ``make nb NB=notebooks/<name>`` executes it and saves
the outputs). With ``--prose-only`` on the command line, ``save`` instead copies the markdown
cells into the already executed notebook, keeping its code cells and outputs, and refuses
when any code cell (or the cell layout) differs.
"""
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
PROSE_ONLY = "--prose-only" in sys.argv


class Notebook:
    """Cells of one chapter; ``substitutions`` replace placeholders in markdown cells."""

    def __init__(self, substitutions=None):
        self.cells = []
        self.substitutions = substitutions or {}

    def md(self, text):
        text = text.strip("\n")
        for key, value in self.substitutions.items():
            text = text.replace(key, value.strip("\n"))
        self.cells.append(new_markdown_cell(text))

    def code(self, text):
        self.cells.append(new_code_cell(text.strip("\n")))

    def save(self, name, prose_only=PROSE_ONLY):
        path = ROOT / "notebooks" / name
        if prose_only:
            old = nbformat.read(path, as_version=4)
            if len(old.cells) != len(self.cells) or any(
                a.cell_type != b.cell_type or (a.cell_type == "code" and a.source != b.source)
                for a, b in zip(old.cells, self.cells)
            ):
                raise SystemExit(f"{name}: code cells changed; regenerate and execute instead of --prose-only")
            for a, b in zip(old.cells, self.cells):
                if a.cell_type == "markdown":
                    a.source = b.source
            nbformat.write(old, path)
            print(f"updated the prose of {path.relative_to(ROOT)}")
            return
        nb = new_notebook(cells=self.cells)
        nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)}")
