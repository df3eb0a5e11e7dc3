"""Which parallel degrees split each operator: found by building the inventory again with one degree
doubled and seeing whose work changes.

The inventory divides heads, widths, vocabulary and expert groups by the degrees of its shape
(:class:`moe.operators.TrainingShape`, :class:`moe.operators.ServingShape`) where each operator is
built, so rather than tag every call site by hand (and let the tags drift from the arithmetic),
:func:`with_splits` asks the arithmetic: an operator is split by ``tp`` when the same operator (same
name, phase and stage, same occurrence) does different work at twice the ``tp``. A collective whose
group is that degree counts as split by it too (its group size is part of its work). Operators that
only exist at the doubled degree (a TP all-reduce at ``tp=1``) are not in the answer, which is the
inventory at ``shape``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import TypeVar

from moe.operators.op import Op

__all__ = ["with_splits"]

ShapeT = TypeVar("ShapeT")


def _keyed(ops: Sequence[Op]) -> dict[tuple[str, str, str, int], Op]:
    """Each op under (name, phase, stage, occurrence), so repeated names pair up in order."""
    seen: dict[tuple[str, str, str], int] = {}
    out: dict[tuple[str, str, str, int], Op] = {}
    for op in ops:
        base = (op.name, op.phase.value, op.stage)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out[base + (n,)] = op
    return out


def with_splits(build: Callable[[ShapeT], list[Op]], shape: ShapeT, degrees: Sequence[str]) -> list[Op]:
    """``build(shape)`` with each op's ``split`` naming those of ``degrees`` (integer fields of
    ``shape``, such as "tp", "ep", "cp") whose doubling changes its work, in the order given."""
    names = {f.name for f in fields(shape)}  # type: ignore[arg-type]
    for degree in degrees:
        if degree not in names or not isinstance(getattr(shape, degree), int):
            allowed = ", ".join(sorted(n for n in names if isinstance(getattr(shape, n), int)))
            raise ValueError(
                f"{degree!r} is not a parallel degree of {type(shape).__name__}; allowed: {allowed}"
            )
    base = build(shape)
    keys = list(_keyed(base))
    split: list[list[str]] = [[] for _ in base]
    for degree in degrees:
        doubled = _keyed(build(replace(shape, **{degree: 2 * getattr(shape, degree)})))  # type: ignore[type-var]
        for i, key in enumerate(keys):
            other = doubled.get(key)
            if other is None or other.work != base[i].work:
                split[i].append(degree)
    return [replace(op, split=tuple(s)) for op, s in zip(base, split, strict=True)]
