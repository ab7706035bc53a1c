"""Plain-text tables and short text for a terminal (`activity`, `dead-letters list`, `trace`):
fixed columns, each as wide as its widest cell up to a cap, and long text cut at a word
boundary with an ellipsis — never mid-word, so an id or a status code is read whole or not at
all."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ELLIPSIS = "…"


def shorten(text: object, width: int) -> str:
    """`text` on one line (whitespace collapsed), at most `width` characters when it has a word
    boundary to cut at: the words that fit, then `…`. A first word longer than `width` is kept
    whole — a cut id would name something else."""
    flat = " ".join(str(text).split())
    if len(flat) <= width:
        return flat
    cut = flat.rfind(" ", 0, max(width, 1))
    if cut <= 0:
        first = flat.split(" ", 1)[0]
        return first if first == flat else first + " " + ELLIPSIS
    return flat[:cut].rstrip(" ,;:") + " " + ELLIPSIS


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    max_widths: Mapping[str, int] | None = None,
    right_aligned: Sequence[str] = (),
) -> list[str]:
    """The header line and one line per row; `None` cells print as `-`. A column named in
    `max_widths` is cut to that width (`shorten`), the others are as wide as their content."""
    caps = max_widths or {}
    cells = [
        [
            shorten("-" if value is None else value, caps.get(header, 10**6))
            for header, value in zip(headers, row, strict=True)
        ]
        for row in rows
    ]
    widths = [max(len(c) for c in column) for column in zip(headers, *cells, strict=True)]

    def line(values: Sequence[str]) -> str:
        padded = (
            v.rjust(w) if h in right_aligned else v.ljust(w)
            for h, v, w in zip(headers, values, widths, strict=True)
        )
        return "  ".join(padded).rstrip()

    return [line(headers), *(line(c) for c in cells)]
