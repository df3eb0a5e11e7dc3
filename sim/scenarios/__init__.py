"""Scenarios as data: a model, a GPU, a deployment and a workload (or a training plan), with the
figures published for them.

Each ``sim/scenarios/<name>.toml`` states one published configuration once (the Day-6 deployment,
the profiled prefill and decode runs, V2's generation claim, V3's pre-training), and everything that
runs it loads it from here: the reference tests, the README's validation table
(``reports.validation``, whose published figures for these runs come from these files), the
notebooks, the golden figures and the benchmarks. A file holds:

* ``name``, ``description``, ``source``; ``model`` and ``gpu`` (catalog names);
* run settings: ``usd_per_gpu_hour`` (optional: the GPU profile's price otherwise), ``seed``,
  ``duration_s``, ``warmup_s`` (optional);
* ``[deployment]`` and ``[workload]``: the dicts of :func:`sim.estimate_serving` (DESIGN.md keys);
  or, for a training run, ``num_gpus``, ``tokens`` and ``[plan]``: the plan keywords of
  :func:`sim.estimate_training` (``tp``, ``pp``, ``ep``, ``seq_len``, ``global_batch_seqs``, ...);
* ``[[figures]]``: each published figure with ``key``, ``description``, ``metric`` (the attribute of
  the :class:`sim.serving.api.ServingResult` or ``TrainingResult`` it is compared with), ``value``, ``unit``,
  ``tolerance`` (relative unless ``absolute``), ``source`` and optionally ``lower_bound`` ("over X");
* ``[variants.<name>.workload]``: a named variant whose workload keys replace the scenario's
  (``get("day6", variant="benchmark")``).

Files are read when asked for (nothing happens on import); a scenario is a frozen record whose
``deployment`` and ``workload`` are fresh plain dicts on every access.
"""

from __future__ import annotations

import copy
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.serving.api import ServingResult
    from sim.training.api import TrainingResult

__all__ = ["ScenarioFigure", "Scenario", "get", "names", "SCENARIO_DIR"]

SCENARIO_DIR = Path(__file__).resolve().parent

_TOP_KEYS = frozenset(
    {
        "name",
        "description",
        "source",
        "model",
        "gpu",
        "usd_per_gpu_hour",
        "seed",
        "duration_s",
        "warmup_s",
        "deployment",
        "workload",
        "figures",
        "variants",
        "num_gpus",
        "tokens",
        "plan",
    }
)
_FIGURE_KEYS = frozenset(
    {"key", "description", "metric", "value", "unit", "tolerance", "source", "absolute", "lower_bound"}
)


@dataclass(frozen=True)
class ScenarioFigure:
    """A figure published for a scenario, the result attribute it is compared with, and how close a
    prediction must come: ``tolerance`` is relative (0.2 = 20%) unless ``absolute`` (then in ``unit``);
    a ``lower_bound`` ("over X") is met when the prediction reaches ``value``."""

    key: str
    description: str
    metric: str
    value: float
    unit: str
    tolerance: float
    source: str
    absolute: bool = False
    lower_bound: bool = False

    def within(self, simulated: float) -> bool:
        if self.lower_bound:
            return simulated >= self.value
        if self.absolute:
            return abs(simulated - self.value) <= self.tolerance
        return abs(simulated - self.value) <= self.tolerance * abs(self.value)

    def of(self, result: ServingResult | TrainingResult) -> float:
        """The simulated value of this figure in ``result``."""
        return float(getattr(result, self.metric))


@dataclass(frozen=True)
class Scenario:
    """One published configuration (module docstring). ``deployment`` and ``workload`` are copies."""

    name: str
    description: str
    source: str
    model: str
    gpu: str
    usd_per_gpu_hour: float | None
    seed: int
    duration_s: float
    warmup_s: float | None
    figures: tuple[ScenarioFigure, ...]
    variant: str = ""
    num_gpus: int = 0  # training scenarios
    tokens: float = 0.0  # training scenarios: the token budget
    _deployment_json: str = field(default="{}", repr=False)
    _workload_json: str = field(default="{}", repr=False)
    _plan_json: str = field(default="{}", repr=False)

    @property
    def kind(self) -> str:
        """ "training" for a plan, "serving" for a deployment and workload."""
        return "training" if self._plan_json != "{}" else "serving"

    @property
    def plan(self) -> dict[str, Any]:
        """The training plan's keywords (empty for a serving scenario)."""
        return dict(json.loads(self._plan_json))

    @property
    def deployment(self) -> dict[str, Any]:
        return dict(json.loads(self._deployment_json))

    @property
    def workload(self) -> dict[str, Any]:
        return dict(json.loads(self._workload_json))

    def figure(self, key: str) -> ScenarioFigure:
        for fig in self.figures:
            if fig.key == key:
                return fig
        known = [f.key for f in self.figures]
        raise ValueError(f"scenario {self.name!r} has no figure {key!r}; it has {known}.")

    def serving_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of :func:`sim.estimate_serving` for this scenario; ``overrides`` replace
        any of them (``gpu="H800@2025-02"``, ``duration_s=120``)."""
        if self.kind != "serving":
            raise ValueError(f"scenario {self.name!r} is a training scenario: use training_kwargs().")
        kwargs: dict[str, Any] = {
            "model": self.model,
            "gpu": self.gpu,
            "deployment": self.deployment,
            "workload": self.workload,
            "duration_s": self.duration_s,
            "seed": self.seed,
        }
        if self.usd_per_gpu_hour is not None:
            kwargs["usd_per_gpu_hour"] = self.usd_per_gpu_hour
        if self.warmup_s is not None:
            kwargs["warmup_s"] = self.warmup_s
        unknown = set(overrides) - {
            "model",
            "gpu",
            "deployment",
            "workload",
            "duration_s",
            "seed",
            "usd_per_gpu_hour",
            "warmup_s",
            "tco",
        }
        if unknown:
            raise ValueError(
                f"unknown estimate_serving arguments {sorted(unknown)} for scenario {self.name!r}."
            )
        kwargs.update(overrides)
        return kwargs

    def training_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of :func:`sim.estimate_training` for this training scenario; ``overrides``
        replace any of them (``gpu="H800@2025-02"``, ``tokens=1e12``)."""
        if self.kind != "training":
            raise ValueError(f"scenario {self.name!r} is a serving scenario: use serving_kwargs().")
        kwargs: dict[str, Any] = {"model": self.model, "gpu": self.gpu, "num_gpus": self.num_gpus}
        kwargs.update(self.plan)
        kwargs["tokens"] = self.tokens
        if self.usd_per_gpu_hour is not None:
            kwargs["usd_per_gpu_hour"] = self.usd_per_gpu_hour
        kwargs.update(overrides)
        return kwargs

    def run(self, **overrides: Any) -> Any:
        """``sim.estimate_serving`` (or ``sim.estimate_training``) of this scenario, with overrides."""
        if self.kind == "training":
            from sim.training.estimate import estimate_training

            return estimate_training(**self.training_kwargs(**overrides))
        from sim.serving.api import estimate_serving

        return estimate_serving(**self.serving_kwargs(**overrides))


def _number(name: str, value: Any, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{path.name}: {name} must be a finite number, got {value!r}.")
    return float(value)


def _text(name: str, value: Any, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{path.name}: {name} must be a non-empty string, got {value!r}.")
    return value


def _figure(entry: Any, path: Path) -> ScenarioFigure:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{path.name}: each [[figures]] entry must be a table, got {entry!r}.")
    unknown = set(entry) - _FIGURE_KEYS
    missing = _FIGURE_KEYS - {"absolute", "lower_bound"} - set(entry)
    if unknown or missing:
        raise ValueError(
            f"{path.name}: figure {entry.get('key')!r} has unknown keys {sorted(unknown)} and lacks "
            f"{sorted(missing)}; the keys are {sorted(_FIGURE_KEYS)}."
        )
    tolerance = _number("tolerance", entry["tolerance"], path)
    lower_bound = bool(entry.get("lower_bound", False))
    if tolerance < 0 or (lower_bound and tolerance != 0):
        raise ValueError(
            f"{path.name}: figure {entry['key']!r} needs a tolerance >= 0 (0 for a lower bound), "
            f"got {tolerance}."
        )
    value = entry["value"]
    _number("value", value, path)
    return ScenarioFigure(
        key=_text("key", entry["key"], path),
        description=_text("description", entry["description"], path),
        metric=_text("metric", entry["metric"], path),
        value=value,  # as written: an integer figure stays an integer
        unit=_text("unit", entry["unit"], path),
        tolerance=tolerance,
        source=_text("source", entry["source"], path),
        absolute=bool(entry.get("absolute", False)),
        lower_bound=lower_bound,
    )


@cache
def _read(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _files() -> dict[str, Path]:
    out = {}
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        name = _read(path).get("name")
        if not isinstance(name, str):
            raise ValueError(f"{path}: a scenario file needs a 'name'.")
        out[name] = path
    return out


def names() -> list[str]:
    """The scenarios shipped with the project, by name."""
    return sorted(_files())


def get(name: str, variant: str = "") -> Scenario:
    """The scenario ``name`` (a variant's workload keys replacing the scenario's when ``variant`` is
    given); ValueError listing the known names otherwise."""
    files = _files()
    if name not in files:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(files))}.")
    path = files[name]
    data = copy.deepcopy(_read(path))
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}.")
    training = "plan" in data
    needed = ("plan",) if training else ("deployment", "workload")
    for key in needed:
        if not isinstance(data.get(key), Mapping):
            raise ValueError(f"{path.name}: a scenario needs a [{key}] table (or [plan] for a training run).")
    if training and ("deployment" in data or "workload" in data):
        raise ValueError(f"{path.name}: a training scenario has a [plan], not a deployment or workload.")
    workload = dict(data.get("workload", {}))
    variants = data.get("variants", {})
    if variant:
        if variant not in variants:
            raise ValueError(f"scenario {name!r} has no variant {variant!r}; it has {sorted(variants)}.")
        extra = set(variants[variant]) - {"workload"}
        if extra:
            raise ValueError(
                f"{path.name}: variant {variant!r} may only replace workload keys, not {sorted(extra)}."
            )
        workload.update(variants[variant].get("workload", {}))
    price = data.get("usd_per_gpu_hour")
    warmup = data.get("warmup_s")
    return Scenario(
        name=name,
        description=_text("description", data.get("description"), path),
        source=_text("source", data.get("source"), path),
        model=_text("model", data.get("model"), path),
        gpu=_text("gpu", data.get("gpu"), path),
        usd_per_gpu_hour=None if price is None else _number("usd_per_gpu_hour", price, path),
        seed=int(_number("seed", data.get("seed", 0), path)),
        duration_s=_number("duration_s", data.get("duration_s", 0.0), path),
        warmup_s=None if warmup is None else _number("warmup_s", warmup, path),
        figures=tuple(_figure(entry, path) for entry in data.get("figures", [])),
        variant=variant,
        num_gpus=int(_number("num_gpus", data.get("num_gpus", 0), path)),
        tokens=_number("tokens", data.get("tokens", 0.0), path),
        _deployment_json=json.dumps(data.get("deployment", {})),
        _workload_json=json.dumps(workload),
        _plan_json=json.dumps(data.get("plan", {})),
    )
