"""Derived views of resources computed once while one patient is screened.

Criteria read the same resources again and again (every value set, every window): a concept's
normalised codes, a condition's span, an observation's day. Within ``resources_unchanged()`` (one
patient's screening, during which criteria only read the record) such a view is computed once per
resource object. Entries are keyed by ``id()`` and hold the object itself, so an id cannot be reused by
another object while its entry lives; everything is dropped when the block ends, so nothing outlives
the patient and data changed between screenings are read afresh. Outside the block nothing is cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

# One table per view: id(object) -> (object, view). Filled only while ``_active``, emptied at the end.
_tables: list[dict[int, tuple[Any, Any]]] = []
_active = False


@contextmanager
def resources_unchanged() -> Iterator[None]:
    """A block within which the resources read are not modified; nested blocks share the outer one."""
    global _active
    if _active:
        yield
        return
    _active = True
    try:
        yield
    finally:
        _active = False
        for table in _tables:
            table.clear()


def new_table() -> dict[int, tuple[Any, Any]]:
    """A table for ``per_resource``, emptied with the others when the block ends. A caller on a hot
    path may look an object up in it directly (``table.get(id(obj))``, then ``held[0] is obj``): it
    holds entries only while a block is active, so a hit is what the view would return."""
    table: dict[int, tuple[Any, Any]] = {}
    _tables.append(table)
    return table


def per_resource(
    compute: Callable[[Any], T], table: dict[int, tuple[Any, Any]] | None = None
) -> Callable[[Any], T]:
    """``compute(obj)``, remembered per object within ``resources_unchanged`` (in ``table``, made by
    ``new_table``, when given)."""
    if table is None:
        table = new_table()

    @functools.wraps(compute)
    def view(obj: Any) -> T:
        if not _active:
            return compute(obj)
        held = table.get(id(obj))
        if held is not None and held[0] is obj:
            value: T = held[1]
            return value
        value = compute(obj)
        table[id(obj)] = (obj, value)
        return value

    return view
