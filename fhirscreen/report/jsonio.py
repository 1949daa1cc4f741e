"""Deterministic JSON text and atomic file writes, shared by every output."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Any

import orjson


class OutputError(Exception):
    """An output that cannot be written; the message names the path."""


class OutputWriteError(OutputError):
    """An output that could not be written once the work was done (a full disk, an I/O error), as opposed
    to an output directory found unusable before any work (a configuration error)."""


def plain(value: Any) -> Any:
    """JSON-ready data from evaluator details: mappings with sorted keys, sets sorted, dates as ISO text.

    Details are free-form, so their keys are sorted to keep the output byte-for-byte reproducible.
    """
    kind = value.__class__  # the exact types first: the general checks below cost an ABC lookup each
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        return {str(k): plain(value[k]) for k in sorted(value, key=str)}
    if kind is list or kind is tuple:
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _may_hold_small_float(blob: bytes) -> bool:
    """Whether orjson's text may hold a float with 0 < |x| < 1e-4, which it writes as ``0.00001`` or
    ``2.5e-7`` and the json module as ``1e-05``, ``2.5e-07``: a digit before ``e-``, or ``0.0000``.
    Looked for anywhere, inside strings too (a false match only costs the slower encoder), with
    substring searches: a regular expression took 13 ms per MB."""
    if b"0.0000" in blob:
        return True
    at = blob.find(b"e-")
    while at > 0:
        if 48 <= blob[at - 1] <= 57:  # a digit
            return True
        at = blob.find(b"e-", at + 2)
    return False


def dump_json(document: Any) -> str:
    """Indented UTF-8 JSON with a trailing newline; key order is the order the document was built in.

    The text is the json module's (``indent=2``, ``ensure_ascii=False``), which the golden files hold.
    Its indenting encoder is pure Python (the C one does not indent): 0.2 s for the 300 candidates of a
    10,000-person population, a tenth of a server run's own time. orjson writes the same bytes ten
    times faster for everything but small floats (checked above) and what it refuses (keys that are not
    text, integers beyond 64 bits, unpaired surrogates); those go to the json module as before. The
    one difference left: a NaN or infinity, which json writes as invalid JSON, orjson writes as null.
    """
    blob = _orjson_text(document)
    if blob is None:
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    return blob.decode("utf-8")


def dump_json_bytes(document: Any) -> bytes:
    """``dump_json`` as UTF-8, for output that takes bytes: no text copy (at 1,500 candidates the
    14 MB of candidates.json would be held as text and then again as the bytes written)."""
    blob = _orjson_text(document)
    if blob is None:
        return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    return blob


def _orjson_text(document: Any) -> bytes | None:
    """orjson's indented text, with the trailing newline, where it is the json module's, else None
    (see ``dump_json``)."""
    try:
        blob = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # orjson.JSONEncodeError
        return None
    return None if _may_hold_small_float(blob) else blob


def load_json(text: str | bytes) -> Any:
    """``json.loads``, by orjson where it can (three times faster on a run's candidates.json); what
    orjson refuses (the json module's NaN, an integer beyond 64 bits) goes to the json module."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def write_atomic(path: Path, text: str) -> None:
    """Write a temporary file in the same directory, then rename it: a crash never leaves half a file."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputWriteError(f"{path.parent}: cannot write output here: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared with the study team
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputWriteError(f"{path}: cannot write output: {exc.strerror or exc}") from None
