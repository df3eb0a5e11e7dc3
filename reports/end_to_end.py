"""End-to-end validation against public third-party measurements (``reference/measured_dev.json``).

Every record of the file is mapped onto the public API (``sim.estimate_serving`` /
``sim.estimate_training``) with the configuration its source states, predicted, and scored::

    python -m reports.end_to_end [--json] [--jobs N] [--records R036,R216]
    moe-sim validate --end-to-end [--json]

Nothing is fitted to these figures: they are predictions of a model calibrated on kernel and
component tables only. A record ends in one of three states:

* ``predicted``: mapped and simulated; the error is (predicted - measured) / measured in percent.
* ``refused``: mapped, but the simulator refused the configuration the source ran (does not fit,
  parallelism it cannot express). A failure of the model, listed with its message.
* ``unmapped``: the record lacks what a prediction needs, for one of :data:`UNMAPPED_REASONS`.

Records whose ``kind`` is not ``measured`` (vendor claims, dashboard interpolations, anecdotes) are
predicted and listed like the others but stay out of every median.

How each source's figure is read (which tokens, per GPU or per deployment, how many requests) is
written once per source family in :func:`_map_serving`; the assumptions a mapping had to make are
listed with each record.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "reference" / "measured_dev.json"

# Why a record can be left unmapped (the only reasons allowed; anything else is mapped or refused).
UNMAPPED_REASONS = {
    "no_gpu_count": "the record states no GPU count",
    "no_lengths": "the record states no input/output lengths (a dataset whose lengths it does not give)",
    "no_plan": "the record states no parallel plan or batch",
    "architecture": "an architecture the catalog cannot load",
    "no_figure": "the metric is a best-configuration figure (plan search), not a stated configuration",
}

# Regimes, by a fixed rule on the stated configuration (see :func:`regime`).
REGIMES = ("low_concurrency", "throughput", "large_ep", "training", "other")
GATE_MIN_RECORDS = 10  # a regime with fewer mapped, measured records is reported but not gated
GPUS_PER_NODE = 8  # every system in the file runs 8-GPU HGX/DGX nodes (H100, H200, A100 SXM)

# Record model names -> catalog names. DeepSeek-R1 (and R1-0528) has DeepSeek-V3's architecture: its
# config.json is V3's (huggingface.co/deepseek-ai/DeepSeek-R1, config.json: DeepseekV3ForCausalLM).
# The "(token drop)" Megatron-Bridge runs and the FP8 Instruct-2507 checkpoint are the same networks.
MODEL_NAMES = {
    "mixtral 8x7b": "mixtral-8x7b",
    "mixtral-8x7b": "mixtral-8x7b",
    "mixtral 8x22b": "mixtral-8x22b",
    "gpt-oss-120b": "gpt-oss-120b",
    "gpt-oss-20b": "gpt-oss-20b",
    "deepseek-r1": "deepseek-v3",
    "deepseek-r1-0528": "deepseek-v3",
    "deepseek-r1/v3": "deepseek-v3",
    "qwen3-235b-a22b": "qwen3-235b-a22b",
    "qwen3-235b-a22b-instruct-2507-fp8": "qwen3-235b-a22b",
    "qwen3-235b-a22b (token drop)": "qwen3-235b-a22b",
    "qwen3-30b-a3b": "qwen3-30b-a3b",
    "qwen3-30b-a3b (token drop)": "qwen3-30b-a3b",
    "llama-4-maverick-17b-128e": "llama-4-maverick-17b-128e",
    "llama-4-scout-17b-16e": "llama-4-scout-17b-16e",
    "qwen3-next-80b-a3b": "qwen3-next-80b-a3b",
}

# trtllm-bench request counts per (input, output) length. TensorRT-LLM 0.17 perf-overview
# ("Preparing a Dataset", NVIDIA/TensorRT-LLM @258c754 docs/source/performance/perf-overview.md)
# and the 1.x developer-guide perf-overview (@03e27c7d docs/source/developer-guide/perf-overview.md).
TRTLLM_REQUESTS = {
    (128, 128): 30000,
    (128, 2048): 3000,
    (128, 4096): 1500,
    (2048, 128): 3000,
    (2048, 2048): 1500,
    (5000, 500): 1500,
    (1000, 1000): 3000,
    (500, 2000): 3000,
    (20000, 2000): 1000,
    (1024, 1024): 3000,
    (8192, 1024): 1500,
    (1024, 8192): 1500,
    (32768, 1024): 1000,
    (1024, 32768): 1000,
}
# dstack's DeepSeek-R1 online runs: "500 prompts" (dstackai/benchmarks @7f37e66, Deepseek-R1 README);
# gpustack's random sets: "random sets 500 prompts seed 42" (gpustack @47277d7 docs/performance-lab).
DSTACK_PROMPTS = 500
GPUSTACK_RANDOM_PROMPTS = 500
STEADY_DURATION_S = 600.0  # closed loops whose source gives no prompt count: a steady-state window


@dataclass(frozen=True)
class Plan:
    """A record mapped onto the public API: which call, its arguments, and how the figure is read."""

    api: str  # "serving" | "training"
    kwargs: dict[str, Any]
    figure: str  # key of :data:`READERS`
    reads: str  # what the record's figure is, in the source's own definition
    regime: str
    assumptions: tuple[str, ...] = ()
    measured: float | None = None  # the record's figure in the unit the reader returns
    # (None: the record's ``value`` as is)


@dataclass
class Outcome:
    record: dict[str, Any]
    status: str  # "predicted" | "refused" | "unmapped"
    plan: Plan | None = None
    predicted: float | None = None
    message: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> float:
        if self.plan is not None and self.plan.measured is not None:
            return float(self.plan.measured)
        return float(self.record["value"])

    @property
    def error_pct(self) -> float | None:
        if self.predicted is None or not math.isfinite(self.predicted):
            return None
        return (self.predicted - self.measured) / self.measured * 100.0

    def to_dict(self) -> dict[str, Any]:
        r = self.record
        out: dict[str, Any] = {
            "id": r["id"],
            "kind": r["kind"],
            "status": self.status,
            "category": r["category"],
            "system": r["system"],
            "model": r["model"],
            "hardware": r["hardware"],
            "n_gpus": r["n_gpus"],
            "metric": r["metric"],
            "unit": r["unit"],
            "value": r["value"],
            "source": r["source"],
            "regime": self.plan.regime if self.plan else None,
            "measured": self.measured if self.plan else None,
            "predicted": self.predicted,
            "error_pct": self.error_pct,
        }
        if self.plan is not None:
            out.update(
                api=self.plan.api,
                call=self.plan.kwargs,
                reads=self.plan.reads,
                assumptions=list(self.plan.assumptions),
            )
        if self.message:
            out["reason" if self.status == "unmapped" else "message"] = self.message
        if self.extra:
            out.update(self.extra)
        out["seconds"] = round(self.seconds, 2)
        return out


class Unmapped(Exception):
    """A record left unmapped; ``key`` is one of :data:`UNMAPPED_REASONS`."""

    def __init__(self, key: str, detail: str = "") -> None:
        self.key = key
        text = UNMAPPED_REASONS[key]
        super().__init__(f"{text}: {detail}" if detail else text)


# ---- reading the records ---------------------------------------------------------------------


def load_records(path: str | Path = DATA) -> list[dict[str, Any]]:
    """The records of a measurement file (``{"records": [...]}``); a clear error if malformed."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"Measurement file {str(p)!r} does not exist.")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"Measurement file {str(p)!r} is not valid JSON: {error}.") from None
    records = data.get("records") if isinstance(data, Mapping) else None
    if not isinstance(records, list):
        raise ValueError(f"Measurement file {str(p)!r} needs a top-level 'records' list.")
    needed = {"id", "category", "system", "model", "hardware", "n_gpus", "precision", "workload"}
    needed |= {"metric", "value", "unit", "kind", "source"}
    for i, rec in enumerate(records):
        missing = needed - set(rec) if isinstance(rec, Mapping) else needed
        if missing:
            raise ValueError(f"Record {i} of {str(p)!r} lacks {sorted(missing)}.")
    return records


def _model_name(record: Mapping[str, Any]) -> str:
    import moe

    key = str(record["model"]).strip().lower()
    name = MODEL_NAMES.get(key)
    if name is None or name not in moe.names():
        raise Unmapped("architecture", f"{record['model']!r} is not in the catalog")
    return name


def _gpu_name(record: Mapping[str, Any]) -> str:
    hw = str(record["hardware"]).upper()
    for name in ("H200", "H100", "A100"):
        if name in hw:
            return name
    raise ValueError(f"record {record['id']}: no GPU profile for hardware {record['hardware']!r}")


def _dtypes(precision: str, gpu: str) -> tuple[dict[str, str], list[str]]:
    """Weight and KV-cache formats from a record's precision text, with what was assumed."""
    p = precision.upper()
    notes: list[str] = []
    if "MXFP4" in p:
        out = {"weight_dtype": "fp4"}
        if "/FP8" in p:
            out["kv_dtype"] = "fp8"
            notes.append("'MXFP4/FP8' read as MXFP4 expert weights with an FP8 KV cache")
    elif p.startswith("INT8"):
        out = {"weight_dtype": "int8"}
    elif "FP8" in p:
        out = {"weight_dtype": "fp8"}
        if "KV" in p:
            out["kv_dtype"] = "fp8"
    elif "FP16" in p:
        out = {"weight_dtype": "fp16", "kv_dtype": "fp16"}
    else:
        out = {"weight_dtype": "bf16"}
    if "kv_dtype" not in out:
        notes.append("KV cache format not stated: BF16")
    if gpu == "A100" and out["weight_dtype"] in ("fp8", "fp4"):
        notes.append(f"A100 has no {out['weight_dtype'].upper()} tensor cores: weights stored in that format")
    return out, notes


def _lengths(record: Mapping[str, Any]) -> tuple[int, int]:
    w = record["workload"]
    i, o = w.get("input_len"), w.get("output_len")
    if not isinstance(i, int | float) or not isinstance(o, int | float):
        note = w.get("notes") or "none given"
        raise Unmapped("no_lengths", str(note)[:120])
    return int(i), int(o)


def _trtllm_requests(isl: int, osl: int) -> tuple[int, list[str]]:
    if (isl, osl) in TRTLLM_REQUESTS:
        return TRTLLM_REQUESTS[(isl, osl)], []
    nearest = min(TRTLLM_REQUESTS, key=lambda k: (abs(k[0] + k[1] - isl - osl), k))
    n = TRTLLM_REQUESTS[nearest]
    return n, [f"({isl}, {osl}) is not in trtllm-bench's request table: {n} requests, as for {nearest}"]


def _instance(n_gpus: int, **keys: Any) -> dict[str, Any]:
    """A one-instance colocated deployment over ``n_gpus`` GPUs (8 per node, or one partial node)."""
    nodes = max(1, n_gpus // GPUS_PER_NODE)
    per_node = n_gpus // nodes
    dep: dict[str, Any] = {"mode": "colocated", "nodes": nodes, "gpus_per_node": per_node}
    dep.update(keys)
    return dep


def regime(record: Mapping[str, Any], deployment: Mapping[str, Any] | None, offline: bool) -> str:
    """The fixed rule: training; large EP (more than one node, ep > 8); throughput (offline, max load
    or infinite request rate); low concurrency (one node, stated concurrency <= 64); else other."""
    if record["category"] == "training":
        return "training"
    n = int(record["n_gpus"] or 0)
    ep = int(deployment.get("ep", n)) if deployment else n
    if n > GPUS_PER_NODE and ep > 8:
        return "large_ep"
    if offline:
        return "throughput"
    c = record["workload"].get("batch_or_concurrency")
    if n <= GPUS_PER_NODE and isinstance(c, int | float) and c <= 64:
        return "low_concurrency"
    return "other"


_NO_MTP = "no speculative decoding stated: MTP off"

# The serving stack of each system the file names (sim/serving/stacks): its defaults place the
# experts, choose the dispatcher, the micro-batch overlap, the TP all-reduce and the batch caps.
_STACKS: tuple[tuple[str, str, str], ...] = (
    (r"TensorRT-LLM v0\.17", "trtllm-0.17", "TensorRT-LLM 0.17 engines"),
    (r"TensorRT-LLM \(1\.x\)|TensorRT-LLM v1\.0", "trtllm-1.0", "TensorRT-LLM 1.0 (PyTorch backend)"),
    (
        r"trtllm-serve pytorch backend",
        "trtllm-0.17-pytorch",
        "trtllm-serve's PyTorch backend, the build its README names (commit 9b931c0f, 0.17.post1.dev): "
        "that build's defaults, CUDA graphs off",
    ),
    (r"vLLM v0\.1[01]", "vllm-0.10", "vLLM 0.10/0.11 (V1 engine)"),
    (r"vLLM 0\.7", "vllm-0.7", "vLLM 0.7 (V0 engine)"),
    (r"SGLang", "sglang-0.4", "SGLang, version not stated: 0.4's defaults"),
    (
        r"InferenceX gpt-oss H100",
        "vllm-0.10",
        "the InferenceX harness serves gpt-oss on H100 with vLLM (SemiAnalysisAI/InferenceX "
        "benchmarks/gptoss_fp4_h100.sh @1fc5d73: vllm serve --tensor-parallel-size $TP --max-num-seqs "
        "$CONC, async scheduling, Marlin MXFP4); version not stated: 0.10's defaults",
    ),
)


def stack_for(system: str) -> tuple[str | None, str]:
    """The stack file for ``system`` and a note on the choice (None: the record names no framework,
    and the API's default stack, DeepSeek's, stays)."""
    for pattern, name, why in _STACKS:
        if re.search(pattern, system):
            return name, f"stack {name}: {why}; experts, dispatcher, overlap, all-reduce, caps as it sets"
    return None, "no framework named: the API's default stack (DeepSeek's) places experts and kernels"


def _map_serving(record: Mapping[str, Any]) -> Plan:
    system = str(record["system"])
    source = str(record["source"])
    n = record["n_gpus"]
    if not isinstance(n, int) or n < 1:
        raise Unmapped("no_gpu_count")
    metric = str(record["metric"]).lower()
    if "tok/s/user" in metric or record["kind"] == "interpolated":
        raise Unmapped("no_figure", str(record["metric"]))
    model = _model_name(record)
    gpu = _gpu_name(record)
    dtypes, notes = _dtypes(str(record["precision"]), gpu)
    w = record["workload"]
    conc = w.get("batch_or_concurrency")
    wl: dict[str, Any] = {"mtp_draft_tokens": 0}
    notes.append(_NO_MTP)
    keys: dict[str, Any] = dict(dtypes)
    figure: str
    reads: str
    offline = False
    measured: float | None = None
    tp_match = re.search(r"\b(?:TP|tp)\s?(\d+)", system)
    stated_tp = int(tp_match.group(1)) if tp_match else n

    stack, stack_note = stack_for(system)
    if stack is not None:
        keys["stack"] = stack
    notes.append(stack_note)

    def tensor_parallel() -> None:
        """The stated TP degree (else every GPU), experts placed by the stack's defaults."""
        keys.update(tp=stated_tp)

    if (
        "TensorRT-LLM" in system
        and "trtllm-bench" in metric + source
        or ("TensorRT-LLM" in system and "max load" in str(conc))
    ):
        isl, osl = _lengths(record)
        requests, extra = _trtllm_requests(isl, osl)
        notes += extra
        wl.update(input_len=isl, output_len=osl, requests=requests)
        offline = True
        dep_match = re.search(r"\bDEP(\d+)", system)
        if dep_match:
            d = int(dep_match.group(1))
            keys.update(tp=1, attn_dp=d, ep=d)
        elif tp_match:
            tensor_parallel()
        if "per gpu" in metric:
            figure, reads = "output_tokens_per_s_per_gpu", "output tokens/s per GPU over the makespan"
        else:
            # trtllm-bench's "Token Throughput" is output tokens/s: its sample report in the same
            # perf-overview prints 182.86 req/s and 23,405.9 tokens/s for 128-token outputs
            # (182.86 x 128 = 23,406); v1.0 names it "Total Output Throughput".
            figure, reads = "output_tokens_per_s", "output tokens/s of the whole system over the makespan"
        notes.append(f"trtllm-bench offline run: {requests} requests queued at t = 0 (perf-overview table)")
    elif "gpustack" in source:
        isl, osl = _lengths(record)
        tensor_parallel()
        wl.update(input_len=isl, output_len=osl, requests=GPUSTACK_RANDOM_PROMPTS)
        offline = True
        figure, reads = "total_tokens_per_s", "input + output tokens/s of the deployment over the makespan"
        notes.append(
            f"vllm bench serve at request rate inf: {GPUSTACK_RANDOM_PROMPTS} random prompts at t = 0"
        )
    elif "dstack" in source:
        isl, osl = _lengths(record)
        if not isinstance(conc, int | float):
            raise Unmapped("no_plan", f"concurrency {conc!r}")
        ep_match = re.search(r"\bep\s?(\d+)", system)
        if "trtllm" in system.lower() or "TensorRT-LLM" in system:
            keys.update(tp=8)
            if ep_match:
                keys.update(ep=int(ep_match.group(1)))
            batch_match = re.search(r"max_batch\s?(\d+)", system)
            if batch_match:
                keys.update(max_batch_per_gpu=int(batch_match.group(1)))
        else:
            tensor_parallel()
        wl.update(input_len=isl, output_len=osl, concurrency=int(conc), requests=DSTACK_PROMPTS)
        figure, reads = "output_tokens_per_s", "output tokens/s of the 8 GPUs over the benchmark's makespan"
        notes.append(f"bench_serving with --max-concurrency {int(conc)}: {DSTACK_PROMPTS} prompts")
    elif "InferenceX" in system:
        isl, osl = _lengths(record)
        if not isinstance(conc, int | float):
            raise Unmapped("no_plan", f"concurrency {conc!r}")
        tensor_parallel()
        wl.update(input_len=isl, output_len=osl, concurrency=int(conc))
        figure, reads = "output_tokens_per_s_per_gpu", "output tokens/s per GPU in steady state"
        notes.append(f"prompt count not stated: a steady-state closed loop, {STEADY_DURATION_S:.0f} s window")
    elif "tenstorrent" in source:
        isl, osl = _lengths(record)
        keys.update(tp=n)
        notes.append(
            "SGLang over 2 nodes: tensor parallel over all 16 GPUs (its multi-node default, --tp 16)"
        )
        wl.update(input_len=isl, output_len=osl, concurrency=int(conc))
        if "tpot" in metric:
            figure, reads = "tpot_ms", "mean time per output token at concurrency 1, ms"
        else:
            figure, reads = "prefill_tokens_per_s", "input tokens / TTFT at concurrency 1"
            measured = float(record["value"])
        notes.append(f"concurrency 1: a steady-state closed loop, {STEADY_DURATION_S:.0f} s window")
    else:
        _lengths(record)  # a record without lengths is unmapped for that reason first
        raise Unmapped("no_plan", f"no mapping rule for {system!r}")
    deployment = _instance(n, **keys)
    kwargs = {
        "model": model,
        "gpu": gpu,
        "deployment": deployment,
        "workload": wl,
        "duration_s": STEADY_DURATION_S,
        "seed": 0,
    }
    return Plan("serving", kwargs, figure, reads, regime(record, deployment, offline), tuple(notes), measured)


_PLAN_KEYS = {
    "GBS": "global_batch_seqs",
    "MBS": "micro_batch_seqs",
    "TP": "tp",
    "PP": "pp",
    "VP": "virtual_stages",
    "EP": "ep",
    "CP": "context_parallel",
}


# What a Megatron-Bridge performance run sets besides the plan its table states, from the performance
# scripts and recipes of the repository the record cites (NVIDIA-NeMo/Megatron-Bridge) as they stood
# for the record's container: (container, catalog model, GPUs, tp, pp, ep) -> (estimate_training
# keys, where they come from). Every one sets grad_reduce_in_fp32=False (BF16 gradient buffer and
# reduction). Token drop (25.09's Qwen3 runs: capacity factor 1.0, inputs padded to capacity,
# training/utils/moe_token_drop.py) adds nothing under the force-balanced routing the records state.
_MB = "NVIDIA-NeMo/Megatron-Bridge"
_MB_2509 = (
    f"{_MB} @9a5e79865 (2025-10-15, the 25.09 era): scripts/performance/configs/qwen3/*_llm_pretrain.yaml "
    "(recompute off, grad_reduce_in_fp32 false), run_script.py (token drop, which needs the alltoall "
    "dispatcher; no EP A2A overlap for Qwen3)"
)
# gpt-oss-120b's H100 BF16 recipe keys, the same in the 25.11 and 26.04 containers (sources below)
_GPT_OSS_H100_BF16: dict[str, Any] = {
    "dispatcher": "alltoall",
    "recompute": "selective",
    "recompute_modules": ("layernorm", "moe_act"),
    "grad_dtype": "bf16",
    "pipeline_split": "even",
}
# qwen3-235b-a22b's H100 recipe keys, the same in the 25.11 and 26.04 containers; 25.09's lack the EP
# A2A overlap (sources below)
_QWEN3_235B_H100: dict[str, Any] = {
    "dispatcher": "alltoall",
    "a2a_overlap": True,
    "recompute": "none",
    "grad_dtype": "bf16",
    "sequence_parallel": True,
    "account_for_embedding_in_pipeline_split": True,
    "account_for_loss_in_pipeline_split": True,
}
MEGATRON_BRIDGE_RECIPES: dict[tuple[str, str, int, int, int, int], tuple[dict[str, Any], str]] = {
    ("25.09", "qwen3-30b-a3b", 16, 1, 2, 8): (
        {"dispatcher": "alltoall", "recompute": "none", "grad_dtype": "bf16", "pipeline_split": "even"},
        _MB_2509 + "; Megatron's even layer split (no layout, account_for_* off for the 30B recipe)",
    ),
    ("25.09", "qwen3-235b-a22b", 256, 2, 8, 32): (
        {k: v for k, v in _QWEN3_235B_H100.items() if k != "a2a_overlap"},
        _MB_2509 + "; recipes/qwen/qwen3_moe.py qwen3_235b_a22b_pretrain_config (sequence parallelism, the "
        "embedding and the loss counted as pipeline layers)",
    ),
    ("25.11", "qwen3-235b-a22b", 256, 2, 8, 32): (
        dict(_QWEN3_235B_H100),
        f"{_MB} @2effdfa31 (2025-12-03) scripts/performance/configs/qwen/qwen3_workload_base_configs.py "
        "QWEN3_235B_A22B_PRETRAIN_CONFIG_H100_FP8_CS (moe_a2a_overlap=True), qwen3_llm_pretrain.py "
        "(recompute off, grad_reduce_in_fp32=False), models/qwen/qwen_provider.py (alltoall), "
        "recipes/qwen/qwen3_moe.py "
        "(sequence parallelism; embedding and loss counted as pipeline layers)",
    ),
    ("25.11", "gpt-oss-120b", 64, 1, 4, 8): (
        {
            **_GPT_OSS_H100_BF16,
            # the table's row contradicts itself: GBS 512 at MBS 4 over DP 16 (64 GPUs / PP4) is 8
            # micro-batches, its GA column says 2; MBS 4 and GA 2 are the DGX-B200 row's (PP1, DP64),
            # and the H100 recipe of that month sets micro_batch_size 1 (GBS 512, GA 32)
            "micro_batch_seqs": 1,
        },
        f"{_MB} @8aed9a229 (2025-11-21) scripts/performance/configs/gpt_oss/workload_base_configs.py "
        "BASE_GPT_OSS_120B_CONFIG (global_batch_size 512, micro_batch_size 1) and "
        "GPT_OSS_120B_H100_BF16_BASE_CONFIG (PP4, recompute_modules ['layernorm', 'moe_act']); the archive "
        "table's H100 row states MBS 4 and GA 2, which with GBS 512 over DP 16 cannot both hold; "
        "gpt_oss_llm_pretrain.py (grad_reduce_in_fp32=False), models/gpt_oss/gpt_oss_provider.py "
        "(alltoall); Megatron's even layer split",
    ),
    ("26.04", "gpt-oss-120b", 64, 1, 4, 8): (
        dict(_GPT_OSS_H100_BF16),
        f"{_MB} @067f987 src/megatron/bridge/perf_recipes/gpt_oss/h100/gpt_oss.py "
        "gpt_oss_120b_pretrain_64gpu_h100_bf16_config (recompute_modules ['layernorm', 'moe_act'], "
        "_perf_precision: grad_reduce_in_fp32=False), models/gpt_oss provider (alltoall); Megatron's even "
        "layer split (recipes/gpt_oss/h100/gpt_oss.py: no layout, account_for_* False)",
    ),
    ("26.04", "qwen3-30b-a3b", 16, 1, 1, 16): (
        {
            "dispatcher": "deepep",
            "dispatch_dtype": "bf16",
            "recompute": "none",
            "grad_dtype": "bf16",
        },
        f"{_MB} @067f987 src/megatron/bridge/perf_recipes/qwen/h100/qwen3_moe.py "
        "qwen3_30b_a3b_pretrain_16gpu_h100_fp8cs_config (flex dispatcher, HybridEP backend, "
        "moe_a2a_overlap=False, recompute off); BF16 on the wire: Megatron-LM transformer_config.py "
        "moe_dispatch_fwd_dtype 'bf16' by default, the FP8 payload only for the ncclep backend's MXFP8",
    ),
    ("26.04", "qwen3-235b-a22b", 256, 2, 8, 32): (
        dict(_QWEN3_235B_H100),
        f"{_MB} @067f987 src/megatron/bridge/perf_recipes/qwen/h100/qwen3_moe.py "
        "qwen3_235b_a22b_pretrain_256gpu_h100_fp8cs_config (alltoall dispatcher, moe_a2a_overlap=True with "
        "delay_wgrad_compute, sequence_parallel=True, recompute off); recipes/qwen/h100/qwen3_moe.py (the "
        "embedding and the loss counted as pipeline layers)",
    ),
}


def _megatron_bridge_container(record: Mapping[str, Any]) -> str | None:
    """The NeMo container a Megatron-Bridge record ran ("25.09", "26.04", ...), from its system."""
    found = re.search(r"megatron-bridge container (\d+\.\d+)", str(record.get("system", "")).lower())
    return found.group(1) if found else None


def _map_training(record: Mapping[str, Any]) -> Plan:
    n = record["n_gpus"]
    if not isinstance(n, int) or n < 1:
        raise Unmapped("no_gpu_count")
    model = _model_name(record)
    gpu = _gpu_name(record)
    w = record["workload"]
    text = str(w.get("batch_or_concurrency") or "")
    plan = {key: int(v) for tag, key in _PLAN_KEYS.items() for v in re.findall(rf"\b{tag}(\d+)", text)}
    seq = w.get("input_len")
    if "global_batch_seqs" not in plan or not isinstance(seq, int | float):
        raise Unmapped("no_plan", f"plan {text!r}, sequence length {seq!r}")
    notes_text = str(record.get("notes") or "")
    tokens_match = re.search(r"([\d,]+)\s*tokens/s/GPU", notes_text)
    if not tokens_match:
        raise Unmapped("no_figure", "no tokens/s per GPU to compare")
    measured = float(tokens_match.group(1).replace(",", ""))
    notes = [
        "compared as tokens/s per GPU (the record's notes); its model TFLOPS are those tokens/s times "
        "Megatron-Bridge's FLOPs per token, so the error is the same",
    ]
    precision = "fp8" if "FP8" in str(record["precision"]).upper() else "bf16"
    schedule = "interleaved-1f1b" if plan.get("virtual_stages", 1) > 1 else "1f1b"
    kwargs: dict[str, Any] = {
        "model": model,
        "gpu": gpu,
        "num_gpus": n,
        "tp": plan.get("tp", 1),
        "pp": plan.get("pp", 1),
        "ep": plan.get("ep", 1),
        "seq_len": int(seq),
        "global_batch_seqs": plan["global_batch_seqs"],
        "precision": precision,
        "schedule": schedule,
        "tokens": 1e12,
        "virtual_stages": plan.get("virtual_stages", 1),
        "micro_batch_seqs": plan.get("micro_batch_seqs", 1),
    }
    if "MBS" not in text:
        notes.append("micro-batch not stated: 1 sequence")
    container = _megatron_bridge_container(record)
    if container is not None:
        recipe = MEGATRON_BRIDGE_RECIPES.get((container, model, n, kwargs["tp"], kwargs["pp"], kwargs["ep"]))
        if recipe is not None:
            keys, source = recipe
            kwargs.update(keys)
            notes.append(
                "not in the table, from the performance recipe: "
                + ", ".join(f"{k}={v}" for k, v in keys.items())
                + f" ({source})"
            )
    if "token drop" in str(record["model"]):
        notes.append(
            "token-drop run (capacity factor 1.0, inputs padded to capacity): under the force-balanced "
            "routing the record states every expert gets its capacity, as in the simulator's balanced routing"
        )
    notes.append(f"schedule {schedule} (Megatron's 1F1B, interleaved when virtual stages are stated)")
    return Plan(
        "training",
        kwargs,
        "tokens_per_s_per_gpu",
        "training tokens/s per GPU",
        "training",
        tuple(notes),
        measured,
    )


def map_record(record: Mapping[str, Any]) -> Plan:
    """The API call that predicts ``record``; raises :class:`Unmapped` with a listed reason."""
    if record["category"] == "training":
        return _map_training(record)
    return _map_serving(record)


# ---- predicting --------------------------------------------------------------------------------

READERS: dict[str, Callable[[Any, Mapping[str, Any]], float]] = {
    "output_tokens_per_s": lambda r, kw: r.output_tokens_per_s,
    "output_tokens_per_s_per_gpu": lambda r, kw: r.output_tokens_per_s_per_gpu,
    "total_tokens_per_s": lambda r, kw: r.input_tokens_per_s + r.output_tokens_per_s,
    "tpot_ms": lambda r, kw: r.tpot_mean_s * 1e3,
    "prefill_tokens_per_s": lambda r, kw: kw["workload"]["input_len"] / r.ttft_mean_s,
    "tokens_per_s_per_gpu": lambda r, kw: r.tokens_per_s_per_gpu,
}


def predict(record: dict[str, Any]) -> Outcome:
    """Map, simulate and score one record (never raises for a refusal: that is an outcome)."""
    import sim

    try:
        plan = map_record(record)
    except Unmapped as unmapped:
        return Outcome(record, "unmapped", message=str(unmapped), extra={"reason_key": unmapped.key})
    t0 = time.perf_counter()
    try:
        if plan.api == "serving":
            result = sim.estimate_serving(**plan.kwargs)
            extra = {
                "bound_by": result.bound_by,
                "mean_batch_per_gpu": result.mean_batch_per_gpu,
                "tpot_mean_ms": result.tpot_mean_s * 1e3,
            }
        else:
            result = sim.estimate_training(**plan.kwargs)
            extra = {"bound_by": result.bound_by, "step_time_s": result.step_time_s}
    except ValueError as refusal:
        return Outcome(record, "refused", plan, message=str(refusal), seconds=time.perf_counter() - t0)
    value = float(READERS[plan.figure](result, plan.kwargs))
    seconds = time.perf_counter() - t0
    if not math.isfinite(value) or value <= 0:
        detail = "; ".join(getattr(result, "notes", ())[2:]) or "no request completed"
        return Outcome(
            record,
            "refused",
            plan,
            message=f"the simulation gave no figure ({value}): {detail}",
            seconds=seconds,
        )
    return Outcome(record, "predicted", plan, value, seconds=seconds, extra=extra)


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def summarise(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The ``--json`` object: overall and per-regime median absolute errors over measured records."""
    scored = [o for o in outcomes if o.status == "predicted" and o.record["kind"] == "measured"]
    errors = [abs(o.error_pct) for o in scored if o.error_pct is not None]
    regimes: dict[str, Any] = {}
    for name in REGIMES:
        errs = [
            abs(o.error_pct) for o in scored if o.plan and o.plan.regime == name and o.error_pct is not None
        ]
        refused = sum(
            1
            for o in outcomes
            if o.status == "refused" and o.plan and o.plan.regime == name and o.record["kind"] == "measured"
        )
        regimes[name] = {
            "median_abs_error_pct": _median(errs),
            "n": len(errs),
            "refused": refused,
            "gated": len(errs) >= GATE_MIN_RECORDS,
        }
    measured_total = sum(1 for o in outcomes if o.record["kind"] == "measured")
    covered = sum(1 for o in outcomes if o.record["kind"] == "measured" and o.status != "unmapped")
    return {
        "overall": {"median_abs_error_pct": _median(errors), "n": len(errors)},
        "regimes": regimes,
        "mapped": sum(1 for o in outcomes if o.status == "predicted"),
        "total": len(outcomes),
        "measured_total": measured_total,
        "measured_covered_pct": round(100.0 * covered / measured_total, 1) if measured_total else None,
        "refused": [o.to_dict() for o in outcomes if o.status == "refused"],
        "unmapped": [o.to_dict() for o in outcomes if o.status == "unmapped"],
        "records": [o.to_dict() for o in outcomes if o.status == "predicted"],
    }


def run(
    records: Sequence[dict[str, Any]] | None = None, jobs: int = 1, only: Sequence[str] | None = None
) -> list[Outcome]:
    """Predict every record (or those in ``only``), in file order, on ``jobs`` processes."""
    recs = list(load_records() if records is None else records)
    if only:
        wanted = set(only)
        unknown = wanted - {r["id"] for r in recs}
        if unknown:
            raise ValueError(
                f"Unknown record ids {sorted(unknown)}; the file has {recs[0]['id']}..{recs[-1]['id']}."
            )
        recs = [r for r in recs if r["id"] in wanted]
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}.")
    if jobs == 1 or len(recs) < 2:
        return [predict(r) for r in recs]
    # longest first, so that a slow record does not start last; results come back in file order
    order = sorted(range(len(recs)), key=lambda i: -_cost_hint(recs[i]))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        done = dict(zip(order, pool.map(predict, [recs[i] for i in order], chunksize=1), strict=True))
    return [done[i] for i in range(len(recs))]


def _cost_hint(record: Mapping[str, Any]) -> float:
    w = record["workload"]
    i, o = w.get("input_len") or 0, w.get("output_len") or 0
    return float(i) + 4.0 * float(o)


def _table(summary: Mapping[str, Any]) -> str:
    lines = [
        f"third-party end-to-end records: {summary['total']} ({summary['measured_total']} measured); "
        f"predicted {summary['mapped']}, refused {len(summary['refused'])}, "
        f"unmapped {len(summary['unmapped'])}; "
        f"measured records mapped or refused: {summary['measured_covered_pct']}%",
        f"overall median |error| {summary['overall']['median_abs_error_pct']}% over "
        f"{summary['overall']['n']} measured records",
    ]
    for name, reg in summary["regimes"].items():
        gate = "" if reg["gated"] else " (fewer than 10: not gated)"
        lines.append(
            f"  {name:16s} median |error| {reg['median_abs_error_pct']}% n={reg['n']} "
            f"refused={reg['refused']}{gate}"
        )
    lines.append("")
    lines.append(
        f"{'id':6s} {'kind':9s} {'regime':16s} {'model':22s} {'gpu':5s} {'measured':>10s} "
        f"{'predicted':>10s} {'error':>8s}  unit"
    )
    for rec in summary["records"]:
        lines.append(
            f"{rec['id']:6s} {rec['kind'][:9]:9s} {rec['regime']:16s} {rec['call']['model'][:22]:22s} "
            f"{rec['call']['gpu']:5s} {rec['measured']:10.4g} {rec['predicted']:10.4g} "
            f"{rec['error_pct']:+7.1f}%  {rec['reads']}"
        )
    lines.append("")
    for rec in summary["refused"]:
        lines.append(f"REFUSED {rec['id']} ({rec['model']}, {rec['hardware']}): {rec['message'][:200]}")
    for rec in summary["unmapped"]:
        lines.append(f"unmapped {rec['id']} ({rec['model']}): {rec['reason']}")
    return "\n".join(lines)


# ---- committed results: the dated baseline and the current figures behind the README ------------

RESULTS_DIR = REPO_ROOT / "reports" / "baselines"
CURRENT = RESULTS_DIR / "end-to-end-current.json"
README_BEGIN = (
    "<!-- end-to-end-table:begin (generated by `python -m reports.end_to_end --write`; do not edit) -->"
)
README_END = "<!-- end-to-end-table:end -->"


def baselines() -> list[Path]:
    """Committed dated baselines (``YYYY-MM-DD-end-to-end.json``), oldest first."""
    return sorted(RESULTS_DIR.glob("20*-end-to-end.json"))


def _provenance(command: str) -> dict[str, Any]:
    import datetime
    import hashlib

    from sim.calibration import calibration_sha256
    from sim.grid.provenance import git_state

    commit, dirty = git_state()
    calibration = calibration_sha256()
    return {
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "uncommitted_changes": dirty,
        "command": command,
        "data": str(DATA.relative_to(REPO_ROOT)),
        "data_sha256": hashlib.sha256(DATA.read_bytes()).hexdigest()[:16],
        "calibration_sha256": calibration,
    }


def deepseek_stack() -> list[dict[str, Any]]:
    """The DeepSeek figures the README's published table shows, as the simulator gives them now."""
    from reports.validation import published_checks

    return [c.to_dict() for c in published_checks(training=True, serving=True)]


def write_results(summary: Mapping[str, Any], baseline: bool = False, command: str = "") -> Path:
    """Write ``summary`` as the current results (and, with ``baseline``, as a new dated baseline that
    also carries the DeepSeek figures of the README table, so later changes compare with both)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "provenance": _provenance(command or "python -m reports.end_to_end --write"),
        "end_to_end": summary,
    }
    path = RESULTS_DIR / f"{doc['provenance']['date']}-end-to-end.json"
    if baseline and path.exists():
        raise ValueError(f"{path} exists: a dated baseline is never rewritten.")
    CURRENT.write_text(json.dumps(_finite(doc), indent=1) + "\n")
    if not baseline:
        return CURRENT
    doc["deepseek_figures"] = deepseek_stack()
    path.write_text(json.dumps(_finite(doc), indent=1) + "\n")
    return path


def _fmt_value(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def readme_block(current: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> str:
    """The README's third-party table: per regime, current median |error| beside the baseline's."""
    cur = current["end_to_end"]
    base = baseline["end_to_end"] if baseline else None
    base_date = baseline["provenance"]["date"] if baseline else "-"
    refused = len(cur["refused"])
    unmapped = len(cur["unmapped"])
    lines = [
        f"**Third-party end-to-end measurements** (`reference/measured_dev.json`: {cur['total']} public "
        f"records on H100, H200 and A100, {cur['measured_total']} of them measured; "
        "`moe-sim validate --end-to-end`). All are independent of the calibration: nothing was fitted "
        f"to them. Predicted {cur['mapped']}; refused by the simulator {refused} (failures: configurations "
        f"the sources ran, listed with the simulator's message by the command); unmapped {unmapped} (for "
        f"a listed reason: no lengths, no GPU count, no plan, an architecture the catalog lacks); "
        f"{cur['measured_covered_pct']:.1f} % of the measured records are mapped or refused. Medians of "
        "|predicted - measured| / measured over measured records only; a regime with fewer than 10 is "
        "reported, not gated.",
        "",
        f"| regime (fixed rule) | median abs. error | records scored | refused | baseline {base_date} "
        "| baseline records |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("overall", cur["overall"], base["overall"] if base else None, refused)]
    for name in REGIMES:
        reg = cur["regimes"][name]
        rows.append((name, reg, base["regimes"].get(name) if base else None, reg["refused"]))
    for name, reg, breg, n_refused in rows:
        gate = "" if name == "overall" or reg.get("gated") else " (not gated)"
        base_median = _fmt_pct(breg["median_abs_error_pct"]) if breg else "-"
        lines.append(
            f"| {name}{gate} | {_fmt_pct(reg['median_abs_error_pct'])} | {reg['n']} | {n_refused} | "
            f"{base_median} | {breg['n'] if breg else '-'} |"
        )
    worst = sorted(
        (r for r in cur["records"] if r["kind"] == "measured"), key=lambda r: -abs(r["error_pct"] or 0.0)
    )[:5]
    lines += ["", "Five largest errors:", ""]
    lines += ["| record | model, GPUs, system | measured | predicted | error |", "|---|---|---|---|---|"]
    for r in worst:
        lines.append(
            f"| {r['id']} | {r['call']['model']}, {r['n_gpus']}x {r['call']['gpu']}, {r['system'][:48]} "
            f"| {_fmt_value(r['measured'])} | {_fmt_value(r['predicted'])} | {r['error_pct']:+.0f} % |"
        )
    return "\n".join(lines)


def render_readme() -> str:
    """The README block from the committed current results and the oldest dated baseline."""
    if not CURRENT.exists():
        raise ValueError(f"{CURRENT} is missing: run python -m reports.end_to_end --write")
    current = json.loads(CURRENT.read_text())
    found = baselines()
    baseline = json.loads(found[0].read_text()) if found else None
    return readme_block(current, baseline)


def write_readme(readme: Path = REPO_ROOT / "README.md") -> None:
    text = readme.read_text(encoding="utf-8")
    if README_BEGIN not in text or README_END not in text:
        raise ValueError(f"{readme} lacks the markers {README_BEGIN!r} ... {README_END!r}.")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_BEGIN}\n{render_readme()}\n{README_END}{tail}", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="moe-sim validate --end-to-end",
        description="Predict every public third-party end-to-end measurement (reference/measured_dev.json) "
        "from its stated configuration and report the errors, per regime.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: the CPU count)")
    parser.add_argument("--records", default=None, help="comma-separated record ids (default: all)")
    parser.add_argument(
        "--data", default=str(DATA), help="the measurement file (default: reference/measured_dev.json)"
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="also write the results to reports/baselines/end-to-end-current.json and the README's table",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="with --write: also commit today's dated baseline (with the DeepSeek figures); never rewritten",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    jobs = args.jobs if args.jobs is not None else max(1, os.cpu_count() or 1)
    only = [s.strip() for s in args.records.split(",") if s.strip()] if args.records else None
    try:
        outcomes = run(load_records(args.data), jobs=jobs, only=only)
    except ValueError as error:
        print(f"moe-sim validate --end-to-end: error: {error}", file=sys.stderr)
        return 2
    summary = summarise(outcomes)
    if args.write:
        if only or args.data != str(DATA):
            print(
                "moe-sim validate --end-to-end: error: --write needs every record of the default file",
                file=sys.stderr,
            )
            return 2
        try:
            argv_text = " ".join(list(argv) if argv is not None else sys.argv[1:])
            path = write_results(
                summary, baseline=args.baseline, command=f"python -m reports.end_to_end {argv_text}"
            )
            write_readme()
        except ValueError as error:
            print(f"moe-sim validate --end-to-end: error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {path} and the README's end-to-end table", file=sys.stderr)
    if args.json:
        print(json.dumps(_finite(summary)))
    else:
        print(_table(summary))
    return 0


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
