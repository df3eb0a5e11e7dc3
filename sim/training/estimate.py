"""``sim.estimate_training``: one training run's time and cost, for a given plan or the best one found.

The front door over :mod:`sim.training.api` (build and simulate one plan) and
:mod:`sim.training.search` (``plan="auto"``: search the plans that fit), kept apart from both so
that neither imports the other's importer: search builds on the api, this module on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sim.training.api import TrainingResult, check_budget, resolve, simulate_plan

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel

__all__ = ["estimate_training"]


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
    recompute: str = "selective",
    comm_sm_count: int | None = None,
    max_nodes_per_token: int | None = None,
    layers_per_stage: Sequence[int] | None = None,
    free_comm: bool = False,
    routing_skew: float = 0.0,
    seed: int = 0,
    recompute_modules: Sequence[str] | None = None,
    dispatcher: str = "deepep",
    a2a_overlap: bool = False,
    sequence_parallel: bool | None = None,
    distributed_optimizer: bool = True,
    grad_dtype: str | None = None,
    moe_tp: int = 1,
    account_for_embedding_in_pipeline_split: bool = False,
    account_for_loss_in_pipeline_split: bool = False,
    dispatch_dtype: str | None = None,
    pipeline_split: str = "balanced",
) -> TrainingResult:
    """Simulate one optimizer step of ``model`` on ``num_gpus`` ``gpu``s and cost ``tokens`` of training.

    ``plan="auto"`` searches TP, PP, virtual stages, EP, MoE TP, CP, micro-batch size, recomputation
    and schedule for the fastest plan that fits (:func:`sim.training.search.plan_training`) and
    returns it, with the simulated runners-up in ``runners_up`` (with the default Megatron keys).

    Plans as Megatron-LM expresses them (README "Megatron-LM plans"; the defaults are DeepSeek-V3's
    own system): ``dispatcher`` ("deepep", "alltoall", "allgather"), ``dispatch_dtype``,
    ``a2a_overlap`` (1F1B EP A2A overlap), ``recompute_modules`` (with ``recompute="selective"``),
    ``sequence_parallel`` (default: on when tp > 1), ``distributed_optimizer``, ``grad_dtype``,
    ``moe_tp``, ``pipeline_split`` ("balanced" or Megatron's "even") and the
    ``account_for_embedding_in_pipeline_split`` / ``account_for_loss_in_pipeline_split`` flags.
    """
    m, g = resolve(model, gpu)
    if plan is not None and plan != "auto":
        raise ValueError(f"plan must be None or 'auto', got {plan!r}.")
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
        recompute=recompute,
        comm_sm_count=comm_sm_count,
        max_nodes_per_token=max_nodes_per_token,
        layers_per_stage=layers_per_stage,
        free_comm=free_comm,
        routing_skew=routing_skew,
        seed=seed,
        recompute_modules=recompute_modules,
        dispatcher=dispatcher,
        a2a_overlap=a2a_overlap,
        sequence_parallel=sequence_parallel,
        distributed_optimizer=distributed_optimizer,
        grad_dtype=grad_dtype,
        moe_tp=moe_tp,
        account_for_embedding_in_pipeline_split=account_for_embedding_in_pipeline_split,
        account_for_loss_in_pipeline_split=account_for_loss_in_pipeline_split,
        dispatch_dtype=dispatch_dtype,
        pipeline_split=pipeline_split,
    )
