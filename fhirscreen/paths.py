"""Where the bundled trial file and sample data live, in a checkout or an installed copy."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

# The bundled samples are written for this screening date (see sample_bundles/README.md).
SAMPLE_AS_OF = date(2026, 6, 1)

_REPO = Path(__file__).resolve().parent.parent
# A wheel carries queries/ and sample_bundles/ here (copied at build time by setup.py).
_PACKAGED = Path(__file__).resolve().parent / "data"
_SHARE = Path(sys.prefix) / "share" / "fhirscreen"


def _first_existing(relative: str) -> Path:
    """A checkout (editable install) first, then the installed package data."""
    bases = ([_REPO] if (_REPO / "pyproject.toml").is_file() else []) + [_PACKAGED, _SHARE]
    for base in bases:
        candidate = base / relative
        if candidate.exists():
            return candidate
    return _REPO / relative


def default_trial_file() -> Path:
    return _first_existing("queries/NCT06737380.yaml")


def sample_data_dir() -> Path:
    return _first_existing("sample_bundles")
