"""``moe-sim serve``: run :func:`sim.serving.api.estimate_serving` from the command line.

    moe-sim serve --model deepseek-v3 --gpu H800 \
        --deployment '{"mode": "disaggregated", "prefill": {"nodes": 4},
                       "decode": {"nodes": 18, "redundant_experts": 32}}' \
        --workload '{"input_len": 4383, "output_len": 1211, "cache_hit_rate": 0.563,
                     "concurrency": 12686}' --json

``--deployment`` and ``--workload`` take JSON text or a path to a JSON file. ``--sweep`` runs the
workload at several concurrencies and prints the throughput-vs-interactivity Pareto front.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def _json_arg(text: str, what: str) -> Any:
    if os.path.isdir(text):
        raise ValueError(f"--{what}: {text!r} is a directory; give JSON text or a JSON file.")
    if os.path.isfile(text):
        with open(text) as handle:
            text = handle.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        looks_like_path = text.strip()[:1] not in ("{", "[") and text.strip().endswith(".json")
        if looks_like_path:
            raise ValueError(f"--{what}: no such file {text!r} (give JSON text or a JSON file)") from None
        raise ValueError(f"--{what} must be JSON text or a JSON file: {err}") from None


def _sweep_values(text: str) -> list[int]:
    """``--sweep``'s comma-separated concurrencies, each a whole number >= 1."""
    values = []
    for part in str(text).split(","):
        if not part.strip():
            continue
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(
                f"--sweep takes comma-separated concurrencies, whole numbers >= 1 (e.g. 8,32,128); "
                f"got {part.strip()!r}."
            )
        values.append(value)
    if not values:
        raise ValueError("--sweep takes at least one concurrency (e.g. 8,32,128).")
    return values


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve", help="simulate serving an MoE model: tokens/s, latency, USD per M tokens"
    )
    p.add_argument("--model", default="deepseek-v3")
    p.add_argument("--gpu", default="H800")
    p.add_argument("--deployment", required=True, help="JSON (text or file) with DESIGN.md's deployment keys")
    p.add_argument("--workload", required=True, help="JSON (text or file) with DESIGN.md's workload keys")
    p.add_argument("--usd-per-gpu-hour", type=float, default=None)
    p.add_argument("--duration-s", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep", default=None, help="comma-separated concurrencies: print the Pareto front")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from sim.serving.api import estimate_serving
    from sim.serving.sweep import pareto_sweep

    try:
        deployment = _json_arg(args.deployment, "deployment")
        workload = _json_arg(args.workload, "workload")
        if args.sweep:
            values = _sweep_values(args.sweep)
            front = pareto_sweep(
                args.model,
                args.gpu,
                deployment,
                workload,
                values,
                usd_per_gpu_hour=args.usd_per_gpu_hour,
                duration_s=args.duration_s,
                seed=args.seed,
            )
            out: Any = [p.to_dict() for p in front]
        else:
            out = estimate_serving(
                args.model,
                args.gpu,
                deployment,
                workload,
                usd_per_gpu_hour=args.usd_per_gpu_hour,
                duration_s=args.duration_s,
                seed=args.seed,
            ).to_dict()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, default=float))
        return 0
    rows = out if isinstance(out, list) else [out]
    for row in rows:
        keys = (
            "concurrency",
            "decode_output_tokens_per_s_per_node",
            "prefill_input_tokens_per_s_per_node",
            "tokens_per_s_per_user",
            "ttft_p50_s",
            "tpot_p50_s",
            "usd_per_million_input_tokens",
            "usd_per_million_output_tokens",
            "bound_by",
        )
        print(
            "  ".join(
                f"{k}={row[k]:.4g}" if isinstance(row.get(k), float) else f"{k}={row.get(k)}"
                for k in keys
                if k in row
            )
        )
        for note in row.get("notes", ()):  # what the figures assume, and why any is missing
            print(f"  note: {note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moe-sim")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
