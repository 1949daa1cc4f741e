"""Trial files parsed once per content: the parsed YAML kept as JSON in the user's cache folder.

Parsing the bundled trial file (355 KB of YAML, even with libyaml) takes about 0.12 s, a third of a
run's start-up and paid again by every nightly run; reading the same data back as JSON takes 3 ms.
The kept copy is named by the SHA-256 of the file's text, so an edited file is parsed afresh and a
stale copy is never read. Only data that JSON gives back exactly is kept (no dates, no keys that are
not text, no NaN). A cache folder that cannot be read or written is passed over: the file is parsed
as before (a cron job's home may be read-only). Trial files hold no patient data.

Where: ``$XDG_CACHE_HOME/fhirscreen``, else ``~/.cache/fhirscreen``; ``FHIRSCREEN_CACHE=off`` turns
it off.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("fhirscreen")

# Part of every kept file's name: bump it when the parsed form changes (a new YAML loader, say).
FORMAT = 1


def cache_folder() -> Path | None:
    if os.environ.get("FHIRSCREEN_CACHE", "").lower() in ("off", "0", "no", "false"):
        return None
    root = os.environ.get("XDG_CACHE_HOME")
    try:
        base = Path(root) if root else Path.home() / ".cache"
    except RuntimeError:  # no home directory to be found
        return None
    return base / "fhirscreen"


def parsed_text(text: str, parse: Callable[[str], Any]) -> Any:
    """``parse(text)``, or the data a previous run kept for exactly this text."""
    folder = cache_folder()
    if folder is None:
        return parse(text)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    kept = folder / f"trial-{FORMAT}-{digest}.json"
    try:
        return orjson.loads(kept.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        pass  # not kept yet, or unreadable: parse it
    data = parse(text)
    _keep(kept, data)
    return data


def _keep(path: Path, data: Any) -> None:
    try:
        # Dates and times go to ``default`` (none given: an error) rather than becoming text.
        blob = orjson.dumps(data, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except TypeError:
        return  # keys that are not text, integers beyond 64 bits, dates: parse such files each time
    if orjson.loads(blob) != data:
        return  # NaN or infinity (written as null)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, path)  # whole or not at all, also with two runs at once
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.debug("parsed trial not kept in %s: %s", path.parent, exc)
