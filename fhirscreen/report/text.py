"""Plain-text helpers for terminal output: aligned tables that fit a width, wrapped sentences."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence

DEFAULT_WIDTH = 100  # when the output is not a terminal (a cron job's file, a pipe)
MIN_WIDTH = 60


def terminal_width(override: int | None = None) -> int:
    """``--width`` if given, else the terminal's columns ($COLUMNS counts), else 100; never under 60."""
    if override is not None:
        return max(override, MIN_WIDTH)
    return max(shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns, MIN_WIDTH)


def shorten(text: str, width: int) -> str:
    """One line of at most ``width`` characters, cut at a word with an ellipsis."""
    line = " ".join(text.split())
    if len(line) <= width:
        return line
    cut = line[: width - 3].rsplit(" ", 1)[0] or line[: width - 3]
    return cut.rstrip(",;:") + "..."


def wrap(text: str, width: int, indent: str = "", first: str | None = None) -> list[str]:
    """``text`` in lines of at most ``width`` characters (a word longer than that, e.g. a resource id,
    stays whole); ``first`` replaces ``indent`` on the first line."""
    return textwrap.wrap(
        " ".join(text.split()), width=width, initial_indent=indent if first is None else first,
        subsequent_indent=indent, break_long_words=False, break_on_hyphens=False,
    ) or [(indent if first is None else first).rstrip()]


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    right: Sequence[int] = (),
    width: int | None = None,
    under: int | None = None,
    under_indent: int = 4,
) -> str:
    """Columns padded to their widest cell; ``right`` lists the columns to right-align (numbers).

    ``under`` names a column of long text (a reason): when the table with it would be wider than
    ``width``, that column leaves the row and its text is wrapped on the lines below the row instead.
    """
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    moved = (under is not None and width is not None
             and sum(widths) + 2 * (len(widths) - 1) > width)
    shown = [i for i in range(len(headers)) if not (moved and i == under)]

    def line(row: Sequence[str]) -> str:
        padded = [row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i]) for i in shown]
        return "  ".join(padded).rstrip()

    out = [line(cells[0]), "  ".join("-" * widths[i] for i in shown)]
    for row in cells[1:]:
        out.append(line(row))
        if moved and under is not None and row[under] and width is not None:
            out += wrap(row[under], width, " " * under_indent)
    return "\n".join(out) + "\n"
