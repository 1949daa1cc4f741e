"""Package names imported when first used (PEP 562), so that importing one light module of a package
does not load its heavy siblings (the criteria, the HTML report) before a run has opened its source."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` giving each name in ``where`` from its submodule.

    A name must not be that of a submodule of the package (``runs.observe``, a function in the module of
    the same name): importing the submodule sets the package attribute to the module, and this
    ``__getattr__`` would never be asked again. Import such names eagerly."""
    clashes = set(where) & set(where.values())
    if clashes:
        raise ValueError(f"{package}: names that are also submodules cannot be lazy: {sorted(clashes)}")
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # looked up once
        return value

    return __getattr__
