"""Names a package exports but imports only on first use, so that importing the package stays cheap.

A package lists them in a module-level dict ``LAZY_IMPORTS`` (exported name -> ``"module"``, or
``"module:attribute"`` where the module calls it something else) and answers its module
``__getattr__`` with :func:`lazy_attribute`. ``tests/test_import_graph.py`` counts each entry as an
import of that module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["lazy_attribute"]


def lazy_attribute(package: str, table: Mapping[str, str], name: str) -> Any:
    """``name`` of ``package`` imported from the module ``table`` names for it; AttributeError (as
    for any missing module attribute) when the table has no such name."""
    target = table.get(name)
    if target is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute or name)
