"""The kernel table (kernels/table.py) against the runtime's binders: every id a plan may name has
exactly one row (with parsed fields and a numpy reference) and one binder, and every binder's id
is in the table. A kernel added to a family without a row, a row without a binder or reference,
or a binder registered under a hand-made id fails here."""
import pytest

from kernels import table
from mobile_engine.runtime.binders import BINDERS


def test_every_table_id_has_a_binder():
    missing = sorted(set(table.TABLE) - set(BINDERS))
    assert not missing, f"table ids without a binder: {missing[:10]}"


def test_every_binder_id_is_in_the_table():
    extra = sorted(set(BINDERS) - set(table.TABLE))
    assert not extra, f"binder ids not in kernels/table.py: {extra[:10]}"


@pytest.mark.parametrize("row", table.ROWS, ids=lambda r: r.grammar)
def test_every_row_has_a_reference_and_parsed_ids(row):
    assert row.ids, f"{row.grammar}: no ids"
    assert row.reference is not None, f"{row.grammar}: no numpy reference"
    refs = row.reference()
    refs = refs if isinstance(refs, tuple) else (refs,)    # one per op a kernel serves
    assert refs and all(map(callable, refs)), f"{row.grammar}: the reference does not load"
    for kid, fields in row.ids.items():
        assert row.grammar.format(**fields) == kid      # the fields give the id back
        assert table.fields(kid) is fields and table.row_of(kid) is row


def test_a_missing_binder_or_reference_fails():
    """The checks above can fail: a row whose id has no binder, and a row with no reference."""
    ghost = table.row("f32_conv2d", "f32_conv2d_ghost_{mr}", table.grid(mr=(3,)))
    assert set(ghost.ids) - set(BINDERS) == {"f32_conv2d_ghost_3"}
    assert ghost.reference is None
    with pytest.raises(ValueError, match="twice"):
        table.row("f32_conv2d", "f32_same", [{}, {}])
    with pytest.raises(KeyError, match="not in kernels/table.py"):
        table.fields("f32_conv2d_igemm_3x3_minmax")
