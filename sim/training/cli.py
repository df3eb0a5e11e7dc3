"""``moe-sim train``: simulate a training step and cost a token budget from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="simulate MoE training: step time, MFU, GPU-hours, USD",
        description="Simulate one optimizer step (SimPy) and cost a token budget. Defaults are "
        "DeepSeek-V3's published pre-training configuration (V3 report, ISCA'25).",
        epilog="examples:\n"
        "  moe-sim train                                      # V3 on 2,048 H800, PP16 DualPipe EP64 FP8\n"
        "  moe-sim train --model deepseek-v4-flash --gpu H20 --plan auto --tokens 32e12\n"
        "  moe-sim train --v3-run                             # V3's whole run, phase by phase\n"
        "  moe-sim train --projections --json                 # V4 on H100/H800/H20/A800",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="deepseek-v3", help="catalog name (moe-sim models)")
    p.add_argument("--gpu", default="H800", help="GPU name or alias (moe-sim gpus)")
    p.add_argument("--num-gpus", type=int, default=2048, help="GPUs in the job (= tp x pp x dp)")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel degree")
    p.add_argument("--pp", type=int, default=16, help="pipeline stages")
    p.add_argument("--ep", type=int, default=64, help="expert-parallel degree (divides tp x dp)")
    p.add_argument("--cp", type=int, default=1, help="context parallel degree (taken from DP)")
    p.add_argument("--seq-len", type=int, default=4096, help="tokens per sequence")
    p.add_argument("--global-batch-seqs", type=int, default=15360, help="sequences per optimizer step")
    p.add_argument("--tokens", type=float, default=14.8e12, help="training tokens to cost")
    p.add_argument("--precision", default="fp8", help="fp8 (DeepSeek-V3 recipe) or bf16")
    p.add_argument("--schedule", default="dualpipe",
                   help="1f1b, interleaved-1f1b, zb1p, dualpipe or dualpipev")
    p.add_argument("--usd-per-gpu-hour", type=float, default=None,
                   help="rental price (default: the GPU profile's typical price)")
    p.add_argument("--plan", choices=["auto"], default=None, help="search parallel plans")
    p.add_argument("--virtual-stages", type=int, default=1, help="model pieces per rank (interleaved 1F1B)")
    p.add_argument("--micro-batch-seqs", type=int, default=1, help="sequences per micro-batch")
    # plans as Megatron-LM expresses them (README "Megatron-LM plans")
    p.add_argument("--dispatcher", default="deepep", help="deepep, alltoall or allgather")
    p.add_argument("--dispatch-dtype", default=None, help="fp8 or bf16 (default: by dispatcher)")
    p.add_argument("--a2a-overlap", action="store_true", help="Megatron's 1F1B EP A2A overlap")
    p.add_argument("--recompute", default="selective", help="none, selective or full")
    p.add_argument("--recompute-modules", nargs="+", default=None,
                   help="Megatron --recompute-modules (with --recompute selective)")
    p.add_argument("--grad-dtype", default=None, help="fp32 or bf16 gradient buffer")
    p.add_argument("--moe-tp", type=int, default=1, help="expert tensor-parallel degree")
    p.add_argument("--pipeline-split", default="balanced", help="balanced or even (Megatron's)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument(
        "--projections",
        action="store_true",
        help="V4-Flash / V4-Pro on 2,048 H100, H800, H20, A800 with the best plan found",
    )
    p.add_argument("--v3-run", action="store_true", help="DeepSeek-V3's whole run, phase by phase")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from sim.training.estimate import estimate_training

    if getattr(args, "projections", False) or getattr(args, "v3_run", False):
        return _tables(args)
    try:
        t = estimate_training(
            model=args.model,
            gpu=args.gpu,
            num_gpus=args.num_gpus,
            tp=args.tp,
            pp=args.pp,
            ep=args.ep,
            seq_len=args.seq_len,
            global_batch_seqs=args.global_batch_seqs,
            tokens=args.tokens,
            precision=args.precision,
            schedule=args.schedule,
            usd_per_gpu_hour=args.usd_per_gpu_hour,
            plan=args.plan,
            context_parallel=args.cp,
            virtual_stages=args.virtual_stages,
            micro_batch_seqs=args.micro_batch_seqs,
            dispatcher=args.dispatcher,
            dispatch_dtype=args.dispatch_dtype,
            a2a_overlap=args.a2a_overlap,
            recompute=args.recompute,
            recompute_modules=args.recompute_modules,
            grad_dtype=args.grad_dtype,
            moe_tp=args.moe_tp,
            pipeline_split=args.pipeline_split,
        )
    except ValueError as err:
        print(f"moe-sim train: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(t.to_dict(), default=str))
        return 0
    print(
        f"{t.model} on {t.num_gpus} x {t.gpu}: step {t.step_time_s:.3f} s, "
        f"{t.tokens_per_s_per_gpu:,.0f} tokens/s/GPU, MFU {t.mfu * 100:.1f}% causal / "
        f"{t.mfu_noncausal * 100:.1f}% non-causal, bound by {t.bound_by}"
    )
    print(
        f"{t.tokens / 1e12:.2f}T tokens: {t.gpu_hours / 1e3:,.1f}K GPU-hours, {t.days:.1f} days, "
        f"${t.cost_usd / 1e6:,.2f}M (${t.usd_per_million_tokens:.3f} per M tokens)"
    )
    print("breakdown (s): " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(t.breakdown_s.items())))
    print("phases (s):    " + ", ".join(f"{k} {v:.3f}" for k, v in t.phases_s.items()))
    for n in t.notes:
        print("note:", n)
    return 0


def _tables(args: argparse.Namespace) -> int:
    from sim.training.run import deepseek_v3_run, format_projections, projections

    if args.projections:
        rows = projections()
        print(json.dumps(rows, default=str) if args.json else format_projections(rows))
    if args.v3_run:
        r = deepseek_v3_run()
        if args.json:
            print(json.dumps(r.to_dict(), default=str))
        else:
            for p in r.phases:
                print(
                    f"{p['name']:<22} {p['gpu_hours'] / 1e3:>9,.1f}K GPU-hours {p['days']:>6.2f} days"
                    + ("  (as given)" if p.get("given") else f"  step {p['step_time_s']:.2f} s")
                )
            print(
                f"{'total':<22} {r.gpu_hours / 1e3:>9,.1f}K GPU-hours {r.days:>6.2f} days "
                f"${r.cost_usd / 1e6:.2f}M"
            )
    return 0
