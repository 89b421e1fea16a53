"""nbval plugin: printed floats compare to within their printed precision, not to the last bit.

Strict nbval compares every output character by character. A chapter's printed numbers are
Monte-Carlo means and errors, maxima over sampled neighbours and float32 reductions: on another
CPU (other SIMD kernels, another thread count) the same seeded computation can round to a
neighbouring value in the last printed digit (0.082 against 0.084, 1.579 against 1.580).

This plugin keeps every output checked and changes only what "equal" means for numbers:

- the text outside numbers (after nbval's sanitize patterns, runs of whitespace collapsed)
  must be identical, so a changed word, verdict, column or row fails as before;
- integers (counts, labels, indices, ``n``) must be identical;
- a number printed with a decimal point or an exponent may differ from the committed one by at
  most ``UNITS`` units of the committed value's last printed digit;
- two numbers both below ``ROUNDOFF`` in magnitude (float64 round-off residues such as
  ``3e-32``) are equal to each other, but never to a number above it.

Loaded by ``make nbval`` with ``-p tests.nbval_numbers``; see CONTRIBUTING, § Chapters.
"""
from __future__ import annotations

import copy
import math
import re

UNITS = 2
ROUNDOFF = 1e-12

# A number not glued to a preceding letter, digit or dot (so "x2", "cuda:0" and "v1.2" keep
# their digits in the integer class or the text), with an optional sign and exponent.
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _unit(token: str) -> float | None:
    """Unit of the last printed digit of a float token; None for an integer token."""
    mantissa, _, exponent = token.lower().partition("e")
    if "." not in mantissa and not exponent:
        return None
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def numbers_close(test: str, ref: str, units: int = UNITS, roundoff: float = ROUNDOFF) -> bool:
    """Whether two number tokens agree to ``units`` units of ``ref``'s last printed digit."""
    if test == ref:
        return True
    unit_ref, unit_test = _unit(ref), _unit(test)
    if unit_ref is None or unit_test is None:
        return False  # integers are compared exactly
    a, b = float(test), float(ref)
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    if abs(a) < roundoff and abs(b) < roundoff:
        return True
    return abs(a - b) <= units * unit_ref * (1 + 1e-9)


def _skeleton(s: str) -> str:
    return re.sub(r"\s+", " ", NUMBER.sub("#", s)).strip()


def texts_close(test: str, ref: str, units: int = UNITS, roundoff: float = ROUNDOFF) -> bool:
    """Whether two outputs are the same text with numbers equal to their printed precision."""
    if test == ref:
        return True
    if _skeleton(test) != _skeleton(ref):
        return False
    a, b = NUMBER.findall(test), NUMBER.findall(ref)
    return len(a) == len(b) and all(numbers_close(x, y, units, roundoff) for x, y in zip(a, b))


def _snap(test_outputs, ref_outputs, sanitize):
    """Test outputs in which every text that is close to its reference is replaced by it."""
    if len(test_outputs) != len(ref_outputs):
        return test_outputs
    def snap_fields(test: dict, ref: dict):
        for key, value in test.items():
            other = ref.get(key)
            if isinstance(value, str) and isinstance(other, str) and texts_close(sanitize(value), sanitize(other)):
                test[key] = other

    snapped = []
    for t, r in zip(test_outputs, ref_outputs):
        t = copy.deepcopy(t)  # a NotebookNode stays one: nbval reads attributes
        if t.get("output_type") == r.get("output_type"):
            snap_fields(t, r)  # a stream's "text"
            if isinstance(t.get("data"), dict) and isinstance(r.get("data"), dict):
                snap_fields(t["data"], r["data"])  # each MIME type of a result
        snapped.append(t)
    return snapped


def pytest_configure(config):
    from nbval import plugin

    if getattr(plugin.IPyNbCell.compare_outputs, "_xailib_numbers", False):
        return
    original = plugin.IPyNbCell.compare_outputs

    def compare_outputs(self, test, ref, skip_compare=None):
        return original(self, _snap(test, ref, self.sanitize), ref, skip_compare)

    compare_outputs._xailib_numbers = True
    plugin.IPyNbCell.compare_outputs = compare_outputs
