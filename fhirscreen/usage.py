"""Usage checks made before any work starts: each returns the problem in words, or None.

A nightly job with a typo should fail at once with exit 2, not after an hour of reading, and never by
echoing a secret a user put where a name belongs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

import click
from click.core import ParameterSource

EARLIEST_AS_OF = date(1900, 1, 1)
MAX_AS_OF_AHEAD = timedelta(days=366)

# Options that only mean something with --server (files have no token, TLS, pages or timeouts).
SERVER_ONLY = (
    "token_env",
    "smart_client_id",
    "smart_key_file",
    "smart_key_id",
    "smart_token_url",
    "smart_scope",
    "ca_bundle",
    "insecure",
    "observations",
    "page_size",
    "concurrency",
    "timeout",
    "deadline",
    "bulk",
    "post_report",
)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def as_of_problem(day: date, today: date | None = None) -> str | None:
    """A screening date before 1900 or more than a year ahead is almost certainly a typo."""
    today = today or date.today()
    if day < EARLIEST_AS_OF:
        return f"--as-of {day.isoformat()} is before 1900; a typo? (--force-as-of uses it anyway)"
    if day > today + MAX_AS_OF_AHEAD:
        return (
            f"--as-of {day.isoformat()} is more than a year ahead of today ({today.isoformat()}); a typo? "
            "(--force-as-of uses it anyway)"
        )
    return None


def server_only_given(ctx: click.Context, names: Iterable[str] = SERVER_ONLY) -> list[str]:
    """The server-only options given on the command line (or by environment), as the user wrote them."""
    given = []
    for param in ctx.command.params:
        if param.name not in names:
            continue
        source = ctx.get_parameter_source(param.name)
        if source not in (None, ParameterSource.DEFAULT):
            given.append(max(param.opts, key=len))
    return given


def looks_like_secret(value: str) -> bool:
    """True when an environment variable *name* looks like a token value pasted in its place.

    Names are short words of letters, digits and underscores; tokens are long, mix cases and digits,
    and often have dots (JWTs), dashes or base64 padding.
    """
    if not _ENV_NAME.fullmatch(value):
        return True
    has_digit = any(c.isdigit() for c in value)
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value)
    if len(value) >= 20 and mixed and has_digit:
        return True
    return len(value) >= 24 and has_digit and "_" not in value


def token_env_problem(name: str | None) -> str | None:
    if name is None or not looks_like_secret(name):
        return None
    return (
        "--token-env takes the NAME of an environment variable that holds the token, not the token "
        "itself (what was given is not shown). For example: export FHIR_TOKEN=...; fhirscreen screen "
        "--server URL --token-env FHIR_TOKEN"
    )


def out_dir_problem(out_dir: Path) -> str | None:
    """--out must be a directory fhirscreen can create and write, known before the run starts."""
    try:
        return _out_dir_problem(out_dir)
    except OSError as exc:  # a folder on the way that the run's user cannot enter (EACCES)
        why = exc.strerror.lower() if exc.strerror else type(exc).__name__
        return f"--out {out_dir}: cannot be reached: {why}"


def _out_dir_problem(out_dir: Path) -> str | None:
    if out_dir.exists() and not out_dir.is_dir():
        return f"--out {out_dir}: exists and is not a directory"
    probe = out_dir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"--out {out_dir}: {probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"--out {out_dir}: {probe} is not writable"
    return None
