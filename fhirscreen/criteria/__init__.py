"""Criterion evaluators. Each module registers its evaluator kinds in ``base.REGISTRY`` on import."""

from __future__ import annotations

import importlib
import pkgutil

from fhirscreen.criteria.base import REGISTRY, EvaluatorKind


def load_evaluators() -> dict[str, EvaluatorKind]:  # type: ignore[type-arg]
    """Import every evaluator module of this package once, so trial files can name their kinds."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY
