"""Structural checks of the committed chapters (nbval silently passes cleared notebooks)."""
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


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
