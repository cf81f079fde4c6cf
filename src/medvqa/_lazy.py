"""Lazy exports: a package names its public objects and imports their module on first use.

This keeps ``import medvqa`` (and ``import medvqa.training``) light: the modules that need
torch are imported only when one of their names is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, table: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for the names of ``table``.

    Args:
        package: The package's ``__name__`` (for the error message).
        table: Public name → the module that defines it.
        namespace: The package's ``globals()``; a name, once imported, is cached there.

    >>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"}, ns := {})
    >>> getattr_("sqrt")(4.0), "sqrt" in ns, dir_()
    (2.0, True, ['sqrt'])
    >>> getattr_("nope")
    Traceback (most recent call last):
    ...
    AttributeError: module 'pkg' has no attribute 'nope'
    """

    def getattr_(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *table})

    return getattr_, dir_
