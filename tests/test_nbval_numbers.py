"""The nbval comparison of printed numbers (tests/nbval_numbers.py): what passes and what fails."""
import nbformat
import pytest

from nbval_numbers import _snap, numbers_close, texts_close


@pytest.mark.parametrize("test, ref", [
    ("1.579", "1.580"),                 # one unit of the last printed digit
    ("0.084", "0.082"),                 # two units
    ("6.632", "6.631"),
    ("-0.001", "0.001"),                # a near-zero value whose sign flips
    ("3e-32", "2e-32"),                 # float64 round-off residues
    ("1.24e-32", "5.61e-33"),
    ("2.5e-03", "2.6e-03"),             # one unit of a mantissa printed in scientific notation
])
def test_numbers_within_their_printed_precision_are_equal(test, ref):
    assert numbers_close(test, ref)


@pytest.mark.parametrize("test, ref", [
    ("0.085", "0.082"),                 # three units: a real change
    ("1.61", "1.58"),
    ("0.5", "0.8"),
    ("10", "11"),                       # integers (counts, labels) compare exactly
    ("3e-32", "0.0264"),                # a residue is not equal to a real value
    ("1e-11", "3e-12"),                 # above the round-off floor: 7 units of 1e-12
    ("nan", "0.1"),
])
def test_numbers_beyond_their_printed_precision_differ(test, ref):
    assert not numbers_close(test, ref)


def test_text_outside_the_numbers_must_be_identical():
    ref = "Grad   0.514  lower  n=10"
    assert texts_close("Grad   0.515  lower  n=10", ref)
    assert texts_close("Grad 0.515 lower n=10", ref)            # column widths may move
    assert not texts_close("Grad   0.515  higher n=10", ref)    # a verdict changed
    assert not texts_close("Grad   0.515  lower  n=11", ref)    # a count changed
    assert not texts_close("Grad   0.515  lower", ref)          # a number went missing
    assert not texts_close("Grad   0.614  lower  n=10", ref)    # a value changed
    # identifiers keep their digits: 'x2' is text, not the number 2
    assert not texts_close("x3 0.5", "x2 0.5")


def test_html_tables_compare_the_same_way():
    ref = "<td>0.082</td><td>Grad</td><th>3</th>"
    assert texts_close("<td>0.084</td><td>Grad</td><th>3</th>", ref)
    assert not texts_close("<td>0.084</td><td>Grad</td><th>4</th>", ref)


def test_snap_replaces_only_close_texts_and_keeps_notebook_nodes():
    ref = [nbformat.v4.new_output("execute_result", data={"text/plain": "a 1.580", "text/html": "<td>1.580</td>"}),
           nbformat.v4.new_output("stream", name="stdout", text="took 12.5 s, value 0.30\n")]
    test = [nbformat.v4.new_output("execute_result", data={"text/plain": "a 1.579", "text/html": "<td>1.700</td>"}),
            nbformat.v4.new_output("stream", name="stdout", text="took 3.1 s, value 0.31\n")]
    sanitize = lambda s: s.replace("12.5 s", "TIME").replace("3.1 s", "TIME")  # noqa: E731, as nbval's patterns
    out = _snap(test, ref, sanitize)
    assert out[0].data["text/plain"] == "a 1.580"              # close: replaced by the reference
    assert out[0].data["text/html"] == "<td>1.700</td>"        # not close: left to fail in nbval
    assert out[1].text == ref[1].text                          # close after sanitizing
    assert out[1].output_type == "stream"                      # still attribute-readable
    assert test[0].data["text/plain"] == "a 1.579"             # the inputs are not modified
