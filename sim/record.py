"""The base of the frozen dataclasses that results and specifications are made of."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

__all__ = ["Record"]


class Record:
    """A dataclass that turns itself into plain dicts and lists for JSON (:func:`dataclasses.asdict`,
    recursively). A subclass that holds something ``asdict`` cannot copy overrides ``to_dict``."""

    def to_dict(self) -> dict[str, Any]:
        instance: Any = self  # a dataclass: every subclass is one
        return asdict(instance)
