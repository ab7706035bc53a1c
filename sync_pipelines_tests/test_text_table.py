"""Terminal tables and short text (sync_pipelines/text_table.py)."""

from __future__ import annotations

from sync_pipelines.text_table import render_table, shorten


def test_shorten_cuts_at_a_word_boundary_with_an_ellipsis():
    text = "HTTP 500: integration 'golioth-a', device 'd-7': injected server error"
    assert shorten(text, 40) == "HTTP 500: integration 'golioth-a' …"
    assert len(shorten(text, 40)) <= 40


def test_shorten_keeps_short_text_and_flattens_whitespace():
    assert shorten("line one\n   line two", 80) == "line one line two"


def test_shorten_never_cuts_a_single_long_word():
    request_id = "4d699cb6-5b1d-47bc-a927-7f5230f471d5"
    assert shorten(request_id, 10) == request_id
    assert shorten(f"{request_id} failed twice", 10) == f"{request_id} …"


def test_table_columns_are_as_wide_as_their_content_and_capped_ones_are_cut():
    lines = render_table(
        ("ID", "N", "ERROR"),
        [("a", 7, "short"), ("bbbb", None, "a much longer error message than fits")],
        max_widths={"ERROR": 20},
        right_aligned=("N",),
    )
    assert lines == [
        "ID    N  ERROR",
        "a     7  short",
        "bbbb  -  a much longer error …",
    ]
