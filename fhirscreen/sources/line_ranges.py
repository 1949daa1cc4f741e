"""Byte ranges of a large NDJSON file, each a whole number of lines, for reading on several processes.

A range starts just after a newline (or at 0) and ends just after one (or at the end of the file), so
every line falls in exactly one range, and lines are numbered as a plain ``enumerate(file, 1)`` would.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# Below this many bytes per range, a fork and the pipe back cost more than the lines they share.
MIN_RANGE_BYTES = 4 << 20


def line_ranges(file: Path, parts: int) -> list[tuple[int, int]]:
    """Up to ``parts`` contiguous ``(start, end)`` byte ranges covering ``file``, each at least about
    ``MIN_RANGE_BYTES`` long; one range (the whole file) when it is too small to share."""
    size = os.path.getsize(file)
    parts = max(1, min(parts, size // max(1, MIN_RANGE_BYTES)))
    bounds = [0]
    with file.open("rb") as fh:
        for i in range(1, parts):
            fh.seek(max(size * i // parts, bounds[-1]))
            if fh.tell() > 0:
                fh.seek(fh.tell() - 1)  # a cut just after a newline stays there
                fh.readline()
            at = fh.tell()
            if bounds[-1] < at < size:
                bounds.append(at)
    bounds.append(size)
    return list(itertools.pairwise(bounds))


class NumberedLines:
    """The lines of ``fh`` from byte ``start`` up to ``end``, numbered from ``lineno``. Once they have all
    been taken, ``at`` and ``lineno`` are the offset and number of the line after the range."""

    def __init__(self, fh: IO[bytes], start: int, end: int, lineno: int) -> None:
        self.fh, self.at, self.end, self.lineno = fh, start, end, lineno

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        fh, end, at, lineno = self.fh, self.end, self.at, self.lineno
        fh.seek(at)
        try:
            for line in fh:  # a file's own iteration: faster than readline()
                if at >= end:
                    break
                at += len(line)
                lineno += 1
                yield lineno - 1, line
        finally:
            self.at, self.lineno = at, lineno
