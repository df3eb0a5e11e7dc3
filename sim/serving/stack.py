"""Serving stacks as data: what an inference framework of a given version runs by default.

A stack file (``sim/serving/stacks/<name>.toml``) names the framework and versions it describes and
holds one table per setting, each with its ``value`` and the ``source`` it comes from (the
framework's code, docs or release notes of that version); a setting with no source has no
``value`` (no cap, or the framework's behaviour unknown) and its source says so. A stack never
carries an end-to-end factor: only what the framework chooses.

Settings (:data:`SETTINGS`):

* ``expert_parallel`` (bool): experts spread whole over the instance's GPUs (``ep`` = every GPU)
  when a deployment states neither ``ep`` nor ``moe_tp``; off, each expert is sharded over them;
* ``dispatcher``: how tokens reach experts that are spread whole (:data:`DISPATCHERS`, described in
  :mod:`sim.serving.deployment`); sharded experts always use the all-gather path;
* ``two_batch_overlap`` (bool): two micro-batches overlapping communication with computation
  (``micro_batches`` 2), else one;
* ``tp_allreduce``: "custom" (the one-shot / two-shot NVLink kernel inside a node, NCCL beyond it)
  or "nccl";
* ``max_running_requests`` (int, per attention data-parallel rank): the scheduler's cap on the
  running batch (vLLM ``max_num_seqs``, SGLang ``max_running_requests``, TensorRT-LLM
  ``max_batch_size``); an optional ``by_gpu`` table overrides it per GPU name;
* ``chunked_prefill_tokens`` (int): tokens per colocated prefill chunk (vLLM
  ``max_num_batched_tokens``, SGLang ``chunked_prefill_size``), with an optional ``by_gpu``;
* ``swap_ab`` (bool, default false): the routed experts' grouped GEMM swaps its operands when every
  expert has fewer than 64 rows (weights on the tensor cores' M side, tokens on N), as DeepGEMM's
  opt-in swap-AB masked kernel and vLLM's CUTLASS small-M MoE configurations do;
* ``memory_fraction`` (float in (0, 1]) and ``memory_fraction_of`` (:data:`MEMORY_BASES`): how much
  of each GPU's memory the engine lets its KV cache have: "total", the engine keeps weights,
  activations and KV cache within that fraction of the GPU's memory (vLLM ``gpu_memory_utilization``);
  "static", weights and KV cache within it, activations outside (SGLang ``mem_fraction_static``);
  "free", the KV cache takes that fraction of what weights and activations leave (TensorRT-LLM
  ``free_gpu_memory_fraction``). An optional ``by_gpus`` table gives the fraction by the instance's
  GPU count (its keys the smallest count each value applies from, as SGLang picks by TP size). No
  value: the KV cache takes all the memory weights and activations leave;
* ``moe_kernel``: a kernel table (``gpus/calibration/kernels/<name>.json``, published times of the
  library kernel the stack runs for FP8 routed experts, with the parameters fitted to them) that
  times the routed experts' grouped GEMMs instead of the device's fit (DeepGEMM's); none: the
  device's;
* ``cuda_graphs`` (bool): decode steps replay captured CUDA graphs; off, the host issues every
  kernel from eager PyTorch and the GPU can wait for it
  (:meth:`sim.serving.stepcost.StepCostModel.host_issue_s`);
* ``step_overhead_s`` (seconds >= 0, default 0): host time on every engine step's critical path
  that the GPU waits for (scheduling, input preparation, the sampled tokens' copy back), where the
  engine runs it between steps instead of overlapping it with the GPU's work.

    from sim.serving.stack import get, names
    get("vllm-0.10").max_running_requests_for("H100")   # 1024
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sim.calibration import mtime_ns
from sim.comm import DISPATCHERS

__all__ = ["DEFAULT_STACK", "DISPATCHERS", "MEMORY_BASES", "SETTINGS", "Stack", "get", "names", "stacks_dir"]

DEFAULT_STACK = "deepseek"
SETTINGS: dict[str, type] = {
    "expert_parallel": bool,
    "dispatcher": str,
    "two_batch_overlap": bool,
    "tp_allreduce": str,
    "max_running_requests": int,
    "chunked_prefill_tokens": int,
    "swap_ab": bool,
    "cuda_graphs": bool,
    "memory_fraction": float,
    "memory_fraction_of": str,
    "moe_kernel": str,
    "step_overhead_s": float,
}
REQUIRED = ("expert_parallel", "dispatcher", "two_batch_overlap", "tp_allreduce", "cuda_graphs")
ALLREDUCE = ("custom", "nccl")
MEMORY_BASES = ("total", "static", "free")
TOP_KEYS = {"name", "framework", "versions", "source", *SETTINGS}
SETTING_KEYS = {"value", "source", "by_gpu", "by_gpus"}


def stacks_dir() -> Path:
    """The folder of the stack files (``sim/serving/stacks``)."""
    return Path(__file__).resolve().parent / "stacks"


@dataclass(frozen=True)
class Stack:
    """One stack file, checked."""

    name: str
    framework: str
    versions: str
    source: str
    expert_parallel: bool
    dispatcher: str
    two_batch_overlap: bool
    tp_allreduce: str
    max_running_requests: int | None = None
    chunked_prefill_tokens: int | None = None
    swap_ab: bool = False
    cuda_graphs: bool = True
    memory_fraction: float | None = None
    memory_fraction_of: str = "total"
    memory_fraction_by_gpus: dict[int, float] = field(default_factory=dict)
    moe_kernel: str | None = None
    step_overhead_s: float = 0.0
    by_gpu: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def _for(self, setting: str, gpu_name: str) -> int | None:
        value: int | None = getattr(self, setting)
        overrides = self.by_gpu.get(setting, {})
        key = str(gpu_name).split()[0].upper()
        for name, override in overrides.items():
            if name.upper() == key:
                return override
        return value

    def max_running_requests_for(self, gpu_name: str) -> int | None:
        """The running-request cap on ``gpu_name`` (None: no cap beyond KV capacity)."""
        return self._for("max_running_requests", gpu_name)

    def memory_fraction_for(self, gpus: int) -> float | None:
        """The memory fraction for an instance of ``gpus`` GPUs (None: no fraction, all memory)."""
        steps = [n for n in self.memory_fraction_by_gpus if n <= gpus]
        return self.memory_fraction_by_gpus[max(steps)] if steps else self.memory_fraction

    def chunked_prefill_tokens_for(self, gpu_name: str) -> int | None:
        """Tokens per colocated prefill chunk on ``gpu_name`` (None: not stated)."""
        return self._for("chunked_prefill_tokens", gpu_name)


def names() -> list[str]:
    """Names of the stack files, sorted."""
    return sorted(p.stem for p in stacks_dir().glob("*.toml"))


def get(name: str) -> Stack:
    """The stack called ``name``; ValueError naming the known stacks otherwise."""
    path = stacks_dir() / f"{name}.toml" if isinstance(name, str) and name else None
    if path is None or "/" in name or not path.is_file():
        raise ValueError(f"unknown serving stack {name!r}; known stacks: {', '.join(names())}")
    return _load(str(path), mtime_ns(path))


def _seconds(where: str, setting: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"stack file {where}: {setting!r} must be seconds in [0, 1), got {value!r}")
    return float(value)


def _fraction(where: str, setting: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"stack file {where}: {setting!r} must be a fraction in (0, 1], got {value!r}")
    return float(value)


@lru_cache(maxsize=32)
def _load(path: str, mtime_ns: int) -> Stack:
    where = Path(path).name
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"stack file {where} is not valid TOML: {error}") from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ValueError(f"stack file {where}: unknown keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    for key in ("name", "framework", "versions", "source"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ValueError(f"stack file {where}: {key!r} must be a non-empty string")
    if data["name"] != Path(path).stem:
        raise ValueError(f"stack file {where}: name {data['name']!r} must match the file name")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    by_gpu: dict[str, dict[str, int]] = {}
    for setting, kind in SETTINGS.items():
        entry = data.get(setting)
        if entry is None:
            if setting in REQUIRED:
                raise ValueError(f"stack file {where}: the setting {setting!r} is missing")
            continue
        if not isinstance(entry, dict) or set(entry) - SETTING_KEYS:
            raise ValueError(
                f"stack file {where}: {setting!r} must be a table of {sorted(SETTING_KEYS)}, got {entry!r}"
            )
        source = entry.get("source")
        if not isinstance(source, str) or not source:
            raise ValueError(f"stack file {where}: {setting!r} needs a 'source' (say 'no source: ...')")
        sources[setting] = source
        value = entry.get("value")
        if value is None:
            if setting in REQUIRED:
                raise ValueError(f"stack file {where}: {setting!r} needs a 'value'")
        elif setting == "step_overhead_s":
            value = _seconds(where, setting, value)
        elif kind is float:
            value = _fraction(where, setting, value)
        elif not isinstance(value, kind) or (
            kind is int and isinstance(value, int) and (isinstance(value, bool) or value < 1)
        ):
            raise ValueError(f"stack file {where}: {setting!r} must be a {kind.__name__}, got {value!r}")
        values[setting] = value
        by_gpus = entry.get("by_gpus", {})
        if by_gpus:
            if setting != "memory_fraction" or not isinstance(by_gpus, dict):
                raise ValueError(f"stack file {where}: {setting!r} takes no 'by_gpus' table")
            table: dict[int, float] = {}
            for count, fraction in by_gpus.items():
                if not str(count).isdigit() or int(count) < 1:
                    raise ValueError(
                        f"stack file {where}: {setting}.by_gpus keys are GPU counts >= 1, got {count!r}"
                    )
                table[int(count)] = _fraction(where, f"{setting}.by_gpus.{count}", fraction)
            values["memory_fraction_by_gpus"] = table
        overrides = entry.get("by_gpu", {})
        if overrides:
            if kind is not int or not isinstance(overrides, dict):
                raise ValueError(f"stack file {where}: {setting!r} takes no 'by_gpu' table")
            for gpu_name, override in overrides.items():
                if isinstance(override, bool) or not isinstance(override, int) or override < 1:
                    raise ValueError(
                        f"stack file {where}: {setting}.by_gpu.{gpu_name} must be a whole number >= 1"
                    )
            by_gpu[setting] = dict(overrides)
    if values["dispatcher"] not in DISPATCHERS:
        raise ValueError(
            f"stack file {where}: dispatcher {values['dispatcher']!r} is unknown; allowed: {DISPATCHERS}"
        )
    if values.get("memory_fraction_of", "total") not in MEMORY_BASES:
        raise ValueError(
            f"stack file {where}: memory_fraction_of {values['memory_fraction_of']!r} is unknown; "
            f"allowed: {MEMORY_BASES}"
        )
    if values.get("moe_kernel") is not None:
        from sim import calibration

        calibration.kernel_table(values["moe_kernel"])  # ValueError naming the known tables
    if values["tp_allreduce"] not in ALLREDUCE:
        raise ValueError(
            f"stack file {where}: tp_allreduce {values['tp_allreduce']!r} is unknown; allowed: {ALLREDUCE}"
        )
    return Stack(
        name=data["name"],
        framework=data["framework"],
        versions=data["versions"],
        source=data["source"],
        by_gpu=by_gpu,
        sources=sources,
        **values,
    )
