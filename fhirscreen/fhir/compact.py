"""Kept resources held compactly: equal strings and equal coded elements stored once.

A parsed resource costs about six times its JSON in Python objects (3.5 KB for a 570-byte
Observation), and most of that repeats from one resource to the next: code system URIs, codes,
displays, units, statuses, the patient reference, and whole elements (the ``category`` of every lab,
the ``code`` of every creatinine). Held once, the 60,000 resources kept at 50,000 people take 32 MB
instead of 220 MB (bench/results/2026-12-06-file-mode-50k.md).

Sharing elements between resources is safe because nothing changes a resource once the record
builder holds it: criteria only read (the pure core), and sources rewrite references before handing
resources on. Elements are shared only when equal as JSON values of the same types (``1`` and ``1.0``
differ; an element holding NaN or an integer JSON cannot write is never shared).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

# Elements worth sharing: coded and referencing elements that repeat across resources. Other
# elements (values, periods, dosages) are mostly unique; their strings are still interned.
_SHARED_ELEMENTS = frozenset({
    "code", "category", "subject", "patient", "individual", "encounter", "clinicalStatus",
    "verificationStatus", "medicationCodeableConcept", "medicationReference", "interpretation",
    "referenceRange", "meta", "bodySite", "severity", "reasonCode", "route", "requester", "performer",
})
_MAX_ENTRIES = 200_000  # past this, new strings and elements are kept as they are


class Compactor:
    """Interns strings and shares equal elements among the resources given to ``compact``."""

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}
        self._elements: dict[bytes, Any] = {}

    def compact(self, resource: dict[str, Any]) -> dict[str, Any]:
        """``resource`` with its strings interned and repeating elements replaced by shared equals
        (changed in place; returned for convenience)."""
        for key, value in resource.items():
            kind = value.__class__
            if kind is str:
                resource[key] = self._string(value)
            elif key in _SHARED_ELEMENTS and (kind is dict or kind is list):
                resource[key] = self._element(value)
            elif kind is dict or kind is list:
                self._walk(value)
        return resource

    def _string(self, value: str) -> str:
        held = self._strings.get(value)
        if held is not None:
            return held
        if len(self._strings) < _MAX_ENTRIES:
            self._strings[value] = value
        return value

    def _walk(self, node: dict[str, Any] | list[Any]) -> bool:
        """Intern the strings below ``node``; True when it may be shared (every number writes back
        as itself)."""
        shareable = True
        items = node.items() if node.__class__ is dict else enumerate(node)
        for key, value in items:
            kind = value.__class__
            if kind is str:
                node[key] = self._string(value)  # type: ignore[index]
            elif kind is dict or kind is list:
                shareable = self._walk(value) and shareable
            elif kind is float and not math.isfinite(value):
                shareable = False  # orjson writes NaN and infinities as null
        return shareable

    def _element(self, value: Any) -> Any:
        """The held equal of ``value`` (an element seen before), else ``value`` with its strings
        interned, held for the next resources when it may be shared."""
        try:
            key = orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError):
            self._walk(value)
            return value  # e.g. an integer beyond 64 bits
        # orjson writes NaN and infinities as null: an element with a null is looked at first.
        shareable = b"null" not in key or self._finite(value)
        held = self._elements.get(key) if shareable else None
        if held is not None:
            return held  # the common case: no walk at all
        if self._walk(value) and shareable and len(self._elements) < _MAX_ENTRIES:
            self._elements[key] = value
        return value

    def _finite(self, node: Any) -> bool:
        if node.__class__ is dict:
            return all(self._finite(v) for v in node.values())
        if node.__class__ is list:
            return all(self._finite(v) for v in node)
        return node.__class__ is not float or math.isfinite(node)
