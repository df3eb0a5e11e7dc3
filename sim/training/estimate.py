"""``sim.estimate_training``: one training run's time and cost, for a given plan or the best one found.

The front door over :mod:`sim.training.api` (build and simulate one plan) and
:mod:`sim.training.search` (``plan="auto"``: search the plans that fit), kept apart from both so
that neither imports the other's importer: search builds on the api, this module on both.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import TYPE_CHECKING, Any

from sim.training.api import TrainingResult, build_plan, check_budget, resolve, simulate_plan

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel

__all__ = ["estimate_training", "training_plan_keys"]

# build_plan's keywords that estimate_training sets itself (under its own names: cp is context_parallel)
# or that belong to a search, not to a plan
_SET_HERE = frozenset(
    {
        "tp",
        "pp",
        "ep",
        "dp",
        "cp",
        "seq_len",
        "global_batch_seqs",
        "precision",
        "schedule",
        "virtual_stages",
        "micro_batch_seqs",
        "cache",
    }
)


@cache
def _further_plan_keys() -> frozenset[str]:
    """The plan keys estimate_training passes on to :func:`sim.training.api.build_plan` as they are."""
    keys = inspect.signature(build_plan).parameters.values()
    return frozenset(p.name for p in keys if p.kind is p.KEYWORD_ONLY) - _SET_HERE


def training_plan_keys() -> frozenset[str]:
    """Every keyword :func:`estimate_training` takes: its own and the further plan keys of build_plan."""
    own = inspect.signature(estimate_training).parameters.values()
    return frozenset(p.name for p in own if p.kind is not p.VAR_KEYWORD) | _further_plan_keys()


def estimate_training(
    model: str | MoEModel = "deepseek-v3",
    gpu: str | GPUProfile = "H800",
    num_gpus: int = 2048,
    tp: int = 1,
    pp: int = 16,
    ep: int = 64,
    seq_len: int = 4096,
    global_batch_seqs: int = 15360,
    tokens: float = 14.8e12,
    precision: str = "fp8",
    schedule: str = "dualpipe",
    usd_per_gpu_hour: float | None = None,
    *,
    plan: str | None = None,
    dp: int | None = None,
    virtual_stages: int = 1,
    micro_batch_seqs: int = 1,
    context_parallel: int = 1,
    **plan_keys: Any,
) -> TrainingResult:
    """Simulate one optimizer step of ``model`` on ``num_gpus`` ``gpu``s and cost ``tokens`` of training.

    ``plan="auto"`` searches TP, PP, virtual stages, EP, MoE TP, CP, micro-batch size, recomputation
    and schedule for the fastest plan that fits (:func:`sim.training.search.plan_training`) and
    returns it, with the simulated runners-up in ``runners_up`` (with the default Megatron keys).

    ``plan_keys``: the further keys of a plan, as :func:`sim.training.api.build_plan` takes and checks
    them: ``recompute`` ("selective", "none", "full"), ``comm_sm_count``, ``max_nodes_per_token``,
    ``layers_per_stage``, ``free_comm``, ``routing_skew``, ``seed``, and plans as Megatron-LM expresses
    them (README "Megatron-LM plans"; the defaults are DeepSeek-V3's own system): ``dispatcher``
    ("deepep", "alltoall", "allgather"), ``dispatch_dtype``, ``a2a_overlap`` (1F1B EP A2A overlap),
    ``recompute_modules`` (with ``recompute="selective"``), ``sequence_parallel`` (default: on when
    tp > 1), ``distributed_optimizer``, ``grad_dtype``, ``moe_tp``, ``pipeline_split`` ("balanced" or
    Megatron's "even") and the ``account_for_embedding_in_pipeline_split`` /
    ``account_for_loss_in_pipeline_split`` flags. A key that is none of these is a ValueError.
    """
    m, g = resolve(model, gpu)
    if plan is not None and plan != "auto":
        raise ValueError(f"plan must be None or 'auto', got {plan!r}.")
    unknown = sorted(set(plan_keys) - _further_plan_keys())
    if unknown:
        raise ValueError(
            f"unknown plan key(s) {', '.join(unknown)}; estimate_training takes "
            f"{', '.join(sorted(training_plan_keys()))}."
        )
    check_budget(tokens, usd_per_gpu_hour)
    if plan == "auto":
        from sim.training.search import plan_training

        return plan_training(
            m,
            g,
            num_gpus,
            seq_len=seq_len,
            global_batch_seqs=global_batch_seqs,
            tokens=tokens,
            precision=precision,
            usd_per_gpu_hour=usd_per_gpu_hour,
        ).best
    return simulate_plan(
        m,
        g,
        num_gpus,
        tokens,
        usd_per_gpu_hour,
        tp=tp,
        pp=pp,
        ep=ep,
        dp=dp,
        cp=context_parallel,
        seq_len=seq_len,
        global_batch_seqs=global_batch_seqs,
        precision=precision,
        schedule=schedule,
        virtual_stages=virtual_stages,
        micro_batch_seqs=micro_batch_seqs,
        **plan_keys,
    )
