"""Where the bundled trial file and sample data live, in a checkout or an installed copy."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

# The bundled samples are written for this screening date (see sample_bundles/README.md).
SAMPLE_AS_OF = date(2026, 6, 1)

_REPO = Path(__file__).resolve().parent.parent
_SHARE = Path(sys.prefix) / "share" / "fhirscreen"


def _first_existing(relative: str) -> Path:
    for base in (_REPO, _SHARE):
        candidate = base / relative
        if candidate.exists():
            return candidate
    return _REPO / relative


def default_trial_file() -> Path:
    return _first_existing("queries/NCT06737380.yaml")


def sample_data_dir() -> Path:
    return _first_existing("sample_bundles")
