"""Sweep specs: a grid of configurations in a TOML file, checked before anything runs.

A spec names the kind of evaluation and one list of values per axis; the configurations are
the product of the axes, numbered in a fixed order (the last axis varies fastest), so that
configuration ``i`` can be rebuilt from the spec alone on any machine (a worker is sent the
spec and an index range, never a list of millions of configurations)::

    title = "where each GPU wins"   # optional
    kind = "serving"                # "serving" (closed-form capacity) or "training" (one step, simulated)
    chunk_size = 250                # configurations per task (and per Parquet file)
    retries = 2                     # further attempts for a chunk that fails
    seed = 0                        # the simulators' random seed, the same for every configuration

    [grid]
    model = ["mixtral-8x7b", "qwen3-30b-a3b"]
    gpu = ["H100", "H800", "H20", "A800"]
    deployment = [{ nodes = 1 }, { nodes = 2, tp = 2 }]   # serving: instance keys (DESIGN.md)
    input_len = [1024, 8192]
    output_len = [512]
    tpot_target_s = [0.02, 0.05]
    usd_per_gpu_hour = ["profile", 2.0]                    # "profile": the GPU profile's own price

A value that is not a list is one value. The axes each kind takes, and which are required, are in
``AXES``. A serving deployment is one instance shape used for both roles (prefill and decode
instances of that shape), or a table with ``prefill`` and ``decode`` instance tables. A training
plan is a table of ``sim.estimate_training`` keywords (``num_gpus``, ``tp``, ``pp``, ``ep``,
``schedule`` ...). Unknown keys, models or GPUs and values of the wrong kind are a ``ValueError``
that says what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.tomlfile import read_toml, reject_unknown_keys

KINDS = ("serving", "training")
_TOP_KEYS = {"title", "kind", "chunk_size", "retries", "seed", "grid"}
PROFILE_PRICE = "profile"

# Keywords of sim.estimate_training that are axes of their own, or that a sweep does not take
# ("plan" = "auto" searches plans: a sweep lists them). A plan may set every other keyword.
_NOT_PLAN_KEYS = frozenset(
    {
        "model",
        "gpu",
        "seq_len",
        "global_batch_seqs",
        "tokens",
        "precision",
        "usd_per_gpu_hour",
        "plan",
        "seed",
    }
)


def _instance_keys() -> frozenset[str]:
    """The serving API's instance keys (DESIGN.md, docs/interfaces.md), read from the serving package so
    that a key added there is accepted here."""
    from sim.serving.deployment import INSTANCE_KEYS

    return frozenset(INSTANCE_KEYS)


def _plan_keys() -> frozenset[str]:
    """The keywords of ``sim.estimate_training`` a training plan may set."""
    from sim.training.estimate import training_plan_keys

    return training_plan_keys() - _NOT_PLAN_KEYS


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole_at_least(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if _number(value) and value == int(value) and value >= minimum:
            return None
        return f"a whole number >= {minimum}"

    return check


def _positive(value: Any) -> str | None:
    return None if _number(value) and value > 0 else "a finite number > 0"


def _fraction(value: Any) -> str | None:
    return None if _number(value) and 0 <= value < 1 else "a fraction in [0, 1)"


def _probability(value: Any) -> str | None:
    return None if _number(value) and 0 <= value <= 1 else "a probability in [0, 1]"


def _price(value: Any) -> str | None:
    if value == PROFILE_PRICE or (_number(value) and value > 0):
        return None
    return f'a price in USD per GPU-hour > 0, or "{PROFILE_PRICE}" for the GPU profile\'s own price'


def _name(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "a non-empty name"


def _dtype_name(value: Any) -> str | None:
    return None if isinstance(value, str) and value else 'a number format such as "bf16" or "fp8"'


def _deployment(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "a table of instance keys, or of 'prefill' and 'decode' instance tables"
    roles = {"prefill", "decode"} & set(value)
    if roles:
        if set(value) != {"prefill", "decode"}:
            return "a table with both 'prefill' and 'decode' instance tables and nothing else"
        for role in ("prefill", "decode"):
            problem = _instance(value[role], role)
            if problem:
                return problem
        return None
    return _instance(value, "instance")


def _instance(value: Any, role: str) -> str | None:
    if not isinstance(value, Mapping):
        return f"the {role} must be a table of instance keys"
    allowed = _instance_keys()
    unknown = set(value) - allowed
    if unknown:
        return f"the {role} has unknown keys {sorted(unknown)}; instance keys are {sorted(allowed)}"
    return None


def _plan(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return "a table of sim.estimate_training keywords"
    allowed = _plan_keys()
    unknown = set(value) - allowed
    if unknown:
        return f"a plan with unknown keys {sorted(unknown)}; plan keys are {sorted(allowed)}"
    if "num_gpus" not in value:
        return "a plan that names num_gpus"
    return None


@dataclass(frozen=True)
class AxisRule:
    """What one axis accepts: a check returning what was expected (None when the value is fine),
    and its default (None: the axis is required; a tuple: the values used when it is absent)."""

    check: Callable[[Any], str | None]
    default: tuple[Any, ...] | None = None


# Per kind, the axes in their fixed order (the product's order: the last varies fastest). The price
# comes last so that neighbouring configurations share everything that costs time.
AXES: dict[str, dict[str, AxisRule]] = {
    "serving": {
        "model": AxisRule(_name),
        "gpu": AxisRule(_name),
        "deployment": AxisRule(_deployment),
        "input_len": AxisRule(_whole_at_least(1)),
        "output_len": AxisRule(_whole_at_least(1)),
        "cache_hit_rate": AxisRule(_fraction, (0.0,)),
        "mtp_draft_tokens": AxisRule(lambda v: None if v == "model" else _whole_at_least(0)(v), ("model",)),
        "mtp_acceptance": AxisRule(_probability, (0.85,)),
        "tpot_target_s": AxisRule(_positive),
        "usd_per_gpu_hour": AxisRule(_price, (PROFILE_PRICE,)),
    },
    "training": {
        "model": AxisRule(_name),
        "gpu": AxisRule(_name),
        "plan": AxisRule(_plan),
        "seq_len": AxisRule(_whole_at_least(1), (4096,)),
        "global_batch_seqs": AxisRule(_whole_at_least(1)),
        "precision": AxisRule(_dtype_name, ("bf16",)),
        "tokens": AxisRule(_positive, (1e12,)),
        "usd_per_gpu_hour": AxisRule(_price, (PROFILE_PRICE,)),
    },
}


def _canonical(value: Any) -> Any:
    """Plain JSON-able data with sorted tables and whole floats kept as written (TOML ints stay ints)."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces (used for hashing and for table columns)."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class SweepSpec:
    """A checked spec: settings and the axes (name, values) in product order."""

    title: str
    kind: str
    chunk_size: int
    retries: int
    seed: int
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    path: str = ""

    @property
    def size(self) -> int:
        """Number of configurations (the product of the axes' lengths)."""
        return math.prod(len(values) for _, values in self.axes)

    @property
    def num_chunks(self) -> int:
        return -(-self.size // self.chunk_size)

    def chunk_bounds(self, index: int) -> tuple[int, int]:
        """Configurations ``[start, end)`` of chunk ``index``."""
        if not 0 <= index < self.num_chunks:
            raise ValueError(f"chunk {index} is outside 0..{self.num_chunks - 1}.")
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.size)

    def config(self, index: int) -> dict[str, Any]:
        """Configuration ``index`` (0 <= index < size), decoded from the mixed-radix index."""
        if not 0 <= index < self.size:
            raise ValueError(f"configuration {index} is outside 0..{self.size - 1}.")
        values: list[tuple[str, Any]] = []
        rest = index
        for name, choices in reversed(self.axes):
            rest, digit = divmod(rest, len(choices))
            values.append((name, choices[digit]))
        return {"config_id": index, **dict(reversed(values))}

    def configs(self, start: int = 0, end: int | None = None) -> Iterator[dict[str, Any]]:
        for index in range(start, self.size if end is None else end):
            yield self.config(index)

    def identity(self) -> dict[str, Any]:
        """What fixes the results and their files: kind, seed, chunk size and the axes (not the title
        or the retry count)."""
        return {
            "kind": self.kind,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "axes": [[name, list(values)] for name, values in self.axes],
        }

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "path": self.path,
            "retries": self.retries,
            "configurations": self.size,
            "chunks": self.num_chunks,
            **self.identity(),
        }


def _setting(data: Mapping[str, Any], key: str, default: int, minimum: int, where: str) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: {key} must be a whole number >= {minimum}, got {value!r}.")
    return value


def _canonical_names(name: str, values: list[Any], where: str) -> list[Any]:
    """Model and GPU names as the catalogs spell them (aliases resolved); unknown -> the catalog's error."""
    if name == "model":
        import moe

        try:
            return [moe.get(v).name for v in values]
        except ValueError as error:
            raise ValueError(f"{where}: grid.model: {error}") from None
    if name == "gpu":
        import gpus

        try:
            return [gpus.get(v).name for v in values]
        except ValueError as error:
            raise ValueError(f"{where}: grid.gpu: {error}") from None
    return values


def parse_sweep_spec(data: Mapping[str, Any], path: str | Path = "<spec>") -> SweepSpec:
    """Check a spec's contents (``path`` names it in messages); bad input raises ValueError saying what
    is wrong and what is allowed."""
    where = str(path)
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: a sweep spec is a table, got {type(data).__name__}.")
    reject_unknown_keys(data, _TOP_KEYS, where, "top-level keys")
    kind = data.get("kind", "serving")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {list(KINDS)}, got {kind!r}.")
    title = data.get("title", Path(where).stem if isinstance(path, Path) else "sweep")
    if not isinstance(title, str):
        raise ValueError(f"{where}: title must be a string, got {title!r}.")
    chunk_size = _setting(data, "chunk_size", 250, 1, where)
    retries = _setting(data, "retries", 2, 0, where)
    seed = _setting(data, "seed", 0, 0, where)
    grid = data.get("grid")
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(
            f"{where}: a sweep spec needs a [grid] table; {kind} axes: {sorted(AXES[kind])} "
            f"(required: {sorted(k for k, r in AXES[kind].items() if r.default is None)})."
        )
    rules = AXES[kind]
    unknown = set(grid) - set(rules)
    if unknown:
        raise ValueError(
            f"{where}: unknown {kind} axis/axes {sorted(unknown)} in [grid]; {kind} axes are {list(rules)}."
        )
    axes: list[tuple[str, tuple[Any, ...]]] = []
    for name, rule in rules.items():
        if name in grid:
            raw = grid[name]
            values = list(raw) if isinstance(raw, list) else [raw]
            if not values:
                raise ValueError(f"{where}: grid.{name} is an empty list; give at least one value.")
        elif rule.default is None:
            raise ValueError(f"{where}: grid.{name} is required for a {kind} sweep.")
        else:
            values = list(rule.default)
        for value in values:
            expected = rule.check(value)
            if expected is not None:
                raise ValueError(f"{where}: grid.{name} value {value!r} is not valid: expected {expected}.")
        values = _canonical_names(name, values, where)
        texts = [canonical_json(v) for v in values]
        repeated = sorted({t for t in texts if texts.count(t) > 1})
        if repeated:
            raise ValueError(f"{where}: grid.{name} lists {repeated} more than once; list each value once.")
        axes.append((name, tuple(_canonical(v) for v in values)))
    return SweepSpec(
        title=title,
        kind=kind,
        chunk_size=chunk_size,
        retries=retries,
        seed=seed,
        axes=tuple(axes),
        path=where,
    )


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read and check a spec file (TOML)."""
    path = Path(path)
    return parse_sweep_spec(read_toml(path, f"sweep spec {path} does not exist."), path)


def as_spec(spec: SweepSpec | Mapping[str, Any] | str | Path) -> SweepSpec:
    """A SweepSpec from a spec object, a dict with the file's contents, or a TOML file's path."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_sweep_spec(spec)
    if isinstance(spec, str | Path):
        return load_sweep_spec(spec)
    raise ValueError(f"a sweep spec is a path, a dict or a SweepSpec, got {type(spec).__name__}.")
