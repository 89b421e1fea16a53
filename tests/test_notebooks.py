"""Structural checks of the committed chapters (nbval silently passes cleared notebooks).

Each chapter is a jupytext pair: ``notebooks/<name>.md`` (MyST Markdown notebook, the authored
source) and ``notebooks/<name>.ipynb`` (the executed copy the book and nbval read). The pair
must hold the same cells; ``make nb NB=<name>`` re-executes a chapter and syncs its pair.
"""
import copy
import json
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOURCES = sorted((ROOT / "notebooks").glob("*.md"))


def _cells(nb):
    """(cell type, source) of every cell: what the two files of a pair must share."""
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def pair_differences(md_nb, ipynb_nb) -> list:
    """Human-readable differences between the cells of the two notebooks of a pair (empty: in sync)."""
    a, b = _cells(md_nb), _cells(ipynb_nb)
    out = []
    if len(a) != len(b):
        out.append(f"{len(a)} cells in the .md, {len(b)} in the .ipynb")
    for i, (ca, cb) in enumerate(zip(a, b)):
        if ca != cb:
            out.append(f"cell {i} differs: .md {ca[0]} {ca[1][:60]!r}... vs .ipynb {cb[0]} {cb[1][:60]!r}...")
            break
    return out


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections", []))

    walk(toc.get("chapters", []))
    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    return files


def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 1


def test_every_chapter_is_a_pair():
    assert [p.stem for p in SOURCES] == [p.stem for p in NOTEBOOKS], "every notebooks/<name>.ipynb needs its .md and back"
    for path in NOTEBOOKS:
        formats = json.loads(path.read_text())["metadata"].get("jupytext", {}).get("formats", "")
        assert formats == "ipynb,md:myst", f"{path.name}: not paired with jupytext (formats {formats!r})"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_pair_in_sync(path):
    md = jupytext.read(path)
    ipynb = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    diff = pair_differences(md, ipynb)
    assert not diff, f"{path.name} and its .ipynb are out of sync ({diff}): run `make nb NB={path.stem}`"


def test_pair_check_detects_an_edit():
    md = jupytext.read(SOURCES[0])
    ipynb = nbformat.read(SOURCES[0].with_suffix(".ipynb"), as_version=4)
    edited = copy.deepcopy(ipynb)
    code = next(c for c in edited.cells if c.cell_type == "code")
    code.source += "\nprint('edited in Jupyter only')"
    assert pair_differences(md, edited)
    edited = copy.deepcopy(ipynb)
    edited.cells.pop()
    assert pair_differences(md, edited)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_cell_executed_in_order(path):
    nb = json.loads(path.read_text())
    counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert counts, f"{path.name} has no code cells"
    assert None not in counts, f"{path.name}: some code cells were not executed (commit after Restart & Run All)"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: cells not executed once, in order, from a fresh kernel: {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_error_outputs_and_setup_first(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "xailib.setup(" in "".join(code[0]["source"]), f"{path.name}: the first code cell must call xailib.setup()"
    for c in code:
        for out in c.get("outputs", []):
            assert out.get("output_type") != "error", f"{path.name}: committed with an error output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exactly_one_title(path):
    nb = json.loads(path.read_text())
    titles = [
        line
        for c in nb["cells"]
        if c["cell_type"] == "markdown"
        for line in "".join(c["source"]).splitlines()
        if line.startswith("# ")
    ]
    assert len(titles) == 1, f"{path.name}: expected exactly one '# ' title, got {titles}"


def test_every_chapter_is_in_the_toc():
    listed = set(_toc_files())
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}" in listed, f"{path.name} is not listed in _toc.yml"
    for f in listed:
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f"_toc.yml lists missing {f}"
