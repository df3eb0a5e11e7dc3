"""``moe-sim``: the command line.

Tables for people by default, ``--json`` for scripts. Exit codes scripts can rely on:
0 success; 1 a run failed (e.g. a report with a failed notebook); 2 bad input (unknown names,
impossible plans, malformed files); 3 the model does not fit (``fit`` with ``--require``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_DOES_NOT_FIT = 3

_EPILOG = """\
examples:
  moe-sim gpus                                   # the GPU profiles side by side
  moe-sim models --json                          # the model catalog, machine-readable
  moe-sim fit --model deepseek-v3 --gpu H800 --nodes 4 --context-len 32768
  moe-sim train --model deepseek-v3 --gpu H800 --num-gpus 2048 --pp 16 --ep 64 --precision fp8
  moe-sim serve --model deepseek-v3 --gpu H800 --help
  moe-sim plan serve --model deepseek-v3 --gpu H800 --gpu H20   # cheapest deployment at 20 tok/s/user
  moe-sim plan train --model deepseek-v3 --gpu H800 --num-gpus 2048   # fastest training plan
  moe-sim report                                 # the default batch report (reports/specs/default.toml)
  moe-sim sweep sim/grid/specs/gpu_wins.toml -j 2   # a grid of configurations into Parquet files
  moe-sim query sweeps/gpu_wins "SELECT gpu, count(*) FROM results GROUP BY gpu"
  moe-sim validate --json                        # kernel timing model against measurements
  moe-sim validate --end-to-end --json           # predict public third-party end-to-end measurements

exit codes: 0 ok, 1 a run failed, 2 bad input, 3 does not fit (fit --require)
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], (int, float)) or row[i] in ("-", None) for row in rows)
               for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        parts = [cell.rjust(width) if numeric[i] else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    return str(value)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str))


# --- gpus -------------------------------------------------------------------------------------

def _cmd_gpus(args: argparse.Namespace) -> int:
    import gpus

    profiles = [gpus.get(name) for name in gpus.names()]
    vintages = {p.name: gpus.kernel_vintages(p) for p in profiles}
    if args.json:
        _print_json([{**p.to_dict(), "kernel_vintages": vintages[p.name]} for p in profiles])
        return EXIT_OK

    def tflops(p: gpus.GPUProfile, dtype: str) -> float | None:
        return p.peak_flops_per_s[dtype] / 1e12 if dtype in p.peak_flops_per_s else None

    rows = [[p.name, p.sm_count, tflops(p, "fp64"), tflops(p, "bf16"), tflops(p, "fp8"), tflops(p, "fp4"),
             p.hbm_bytes / 2**30, p.hbm_bandwidth_bytes_per_s / 1e12,
             p.nvlink_bandwidth_bytes_per_s_per_direction / 1e9,
             p.node.scale_out_bandwidth_bytes_per_s_per_gpu / 1e9, p.tdp_w, p.price.usd_per_gpu_hour]
            for p in profiles]
    print(_table(["gpu", "SMs", "FP64 TF", "BF16 TF", "FP8 TF", "FP4 TF", "HBM GiB", "HBM TB/s",
                  "NVLink GB/s/dir", "net GB/s/GPU/dir", "TDP W", "USD/GPU-h"], rows))
    print("\nDense peaks (2:4-sparse datasheet figures halved); '-' = format not supported. "
          "Sources: gpus/data/<gpu>.toml")
    older = [f"{name}@{v}" for name, found in vintages.items() for v in found]
    if older:
        print(f"Also timed with older kernel tables: {', '.join(older)} (e.g. --gpu {older[0]})")
    return EXIT_OK


# --- models -----------------------------------------------------------------------------------

def _cmd_models(args: argparse.Namespace) -> int:
    import moe

    models = [moe.get(name) for name in moe.names()]
    if args.json:
        _print_json([{
            "name": m.name,
            "architecture": m.architecture,
            "total_params": m.total_params,
            "active_params": m.active_params,
            "params_breakdown": dict(m.params_breakdown),
            "num_layers": m.num_layers,
            "num_routed_experts": m.num_routed_experts,
            "experts_per_token": m.experts_per_token,
            "kv_cache_bytes_per_token_bf16_4k": m.kv_cache_bytes_per_token(dtype="bf16", context_len=4096),
            "training_flops_per_token_4k": m.training_flops_per_token(seq_len=4096, causal=True),
        } for m in models])
        return EXIT_OK
    rows = [[m.name, m.architecture, m.total_params / 1e9, m.active_params / 1e9, m.num_layers,
             m.num_routed_experts, m.experts_per_token, m.attention.kind,
             m.kv_cache_bytes_per_token(dtype="bf16", context_len=4096),
             m.training_flops_per_token(seq_len=4096, causal=True) / 1e9] for m in models]
    print(_table(["model", "architecture", "total B", "active B", "layers", "experts", "top-k", "attention",
                  "KV B/token (bf16, 4K)", "train GFLOP/token (4K)"], rows))
    return EXIT_OK


# --- fit --------------------------------------------------------------------------------------

def _cmd_fit(args: argparse.Namespace) -> int:
    import moe
    from sim.fit import fit

    model = args.model
    if model.endswith(".json") or os.path.isfile(model):  # a Hugging Face config.json, as --help says
        stem = os.path.splitext(os.path.basename(model))[0]
        name = os.path.basename(os.path.dirname(os.path.abspath(model))) if stem == "config" else stem
        model = moe.from_hf_config(model, name=name)
    report = fit(model, args.gpu, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                 context_len=args.context_len, kv_dtype=args.kv_dtype, reserve_fraction=args.reserve)
    fits = {r.recipe: (r.serving_fits if args.require == "serving" else r.training_fits)
            for r in report.recipes}
    if args.json:
        _print_json(report.to_dict())
    else:
        gib = 2**30
        print(f"{report.model} on {report.nodes} x {report.gpus_per_node} {report.gpu} "
              f"({report.num_gpus} GPUs, {report.hbm_bytes_per_gpu / gib:.1f} GiB HBM each, "
              f"{report.reserve_fraction:.0%} kept back)")
        print(f"parameters: {report.total_params / 1e9:.1f}B total, "
              f"{report.active_params / 1e9:.1f}B active; "
              f"KV cache {report.kv_bytes_per_token:,.0f} B/token ({report.kv_dtype}) = "
              f"{report.kv_bytes_per_sequence / gib:.2f} GiB per {report.context_len:,}-token sequence\n")
        rows = [[r.recipe, r.weights_bytes_per_gpu / gib, r.serving_fits,
                 r.training_state_bytes_per_gpu / gib, r.training_fits,
                 r.kv_bytes_free_per_gpu / gib, r.max_sequences_at_context] for r in report.recipes]
        print(_table(["recipe", "weights GiB/GPU", "serve fits", "train state GiB/GPU", "train fits",
                      "KV free GiB/GPU", f"seqs @ {report.context_len}"], rows))
        print("\nEvery byte spread evenly over all GPUs (the best any sharding can do): 'no' is definitive, "
              "'yes' is necessary, not sufficient (activations are not counted; see `moe-sim train`).")
    if args.require is not None:
        wanted = args.recipe or "bf16"
        if wanted not in fits:
            raise ValueError(f"unknown recipe {wanted!r}; known recipes: {', '.join(fits)}")
        return EXIT_OK if fits[wanted] else EXIT_DOES_NOT_FIT
    return EXIT_OK


# --- sweep and query ---------------------------------------------------------------------------

_SWEEP_EPILOG = """\
examples:
  moe-sim sweep sim/grid/specs/gpu_wins.toml                 # local processes, one per CPU
  moe-sim sweep my_grid.toml --out sweeps/mine -j 1          # this process only
  moe-sim sweep my_grid.toml --cluster tcp://10.0.0.5:8786   # a running Dask scheduler

The spec format is in sim/grid/spec.py. Results: one Parquet file per chunk and manifest.json in
--out; rerunning the same spec into the same folder resumes (chunks written are skipped).
exit codes: 0 every chunk written, 1 a chunk failed after its retries, 2 bad spec or options
"""


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim.grid.runner import sweep
    from sim.grid.spec import load_sweep_spec

    spec = load_sweep_spec(args.spec)
    out = Path(args.out) if args.out else Path("sweeps") / Path(args.spec).stem
    jobs = args.jobs if args.jobs is not None else max(1, min(os.cpu_count() or 1, spec.num_chunks))
    try:
        summary = sweep(spec, out, jobs=jobs, cluster=args.cluster, retries=args.retries,
                        progress=not args.no_progress)
    except (OSError, TimeoutError) as error:
        if args.cluster is None:
            raise
        print(f"moe-sim: error: could not use the Dask cluster at {args.cluster}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        _print_json(summary.to_dict())
    else:
        rows = [
            ["configurations", summary.configurations],
            ["chunks", summary.chunks],
            ["chunks already written (skipped)", summary.chunks_skipped],
            ["chunks written now", summary.chunks_written],
            ["chunks failed", summary.chunks_failed],
            ["configurations evaluated now", summary.configurations_evaluated],
            ["refused by the simulator (rows with an error)", summary.refused_configurations],
            ["failed attempts (retried or not)", summary.attempts_failed],
            ["seconds", summary.seconds],
            ["configurations per second", summary.configurations_per_s],
        ]
        print(f"sweep {spec.title!r} on {summary.engine} -> {summary.results_dir}")
        print(_table(["", "value"], rows))
        for failure in summary.failures:
            print(f"chunk {failure['chunk']} failed: {failure['errors'][-1]}")
        print(f'query: moe-sim query {summary.results_dir} "SELECT count(*) FROM results"')
    return EXIT_OK if summary.ok else EXIT_FAILED


def _cmd_query(args: argparse.Namespace) -> int:
    from sim.grid.query import query

    table = query(args.results, args.sql)
    rows = table.to_pylist()
    if args.json:
        _print_json(rows)
    elif args.csv:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(table.column_names)
        writer.writerows([list(row.values()) for row in rows])
    else:
        print(_table(table.column_names, [list(row.values()) for row in rows]) if table.column_names else "")
        print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return EXIT_OK


# --- plan --------------------------------------------------------------------------------------

def _progress(enabled: bool) -> tuple[Callable[[int, int, str], None] | None, Callable[[], None]]:
    """A tqdm bar on stderr fed by a search's ``progress(done, total, label)`` (stdout stays clean)."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int, label: str) -> None:
        bar = state.get("bar")
        if bar is None or bar.total != total or state.get("label") != label:
            if bar is not None:
                bar.close()
            bar = state["bar"] = tqdm(total=total, desc=f"screening {label}", file=sys.stderr, leave=False)
            state["label"] = label
        bar.update(done - bar.n)

    def close() -> None:
        if state.get("bar") is not None:
            state["bar"].close()

    return update, close


def _cmd_plan_serve(args: argparse.Namespace) -> int:
    from sim.serving.plan import DEFAULT_WORKLOAD, plan_serving

    workload = dict(DEFAULT_WORKLOAD)
    for key in ("input_len", "output_len", "cache_hit_rate"):
        value = getattr(args, key)
        if value is not None:
            workload[key] = value
    targets: dict[str, Any] = {}
    for key in ("tokens_per_s_per_user", "tpot_p50_s", "ttft_p99_s", "max_gpus", "max_usd_per_hour"):
        value = getattr(args, key)
        if value is not None:
            targets[key] = value
    if not any(k in targets for k in ("tokens_per_s_per_user", "tpot_p50_s")):
        targets["tokens_per_s_per_user"] = 20.0
    targets.setdefault("ttft_p99_s", 5.0)
    space: dict[str, Any] = {}
    if args.nodes:
        space["nodes"] = args.nodes
    if args.mode:
        space["modes"] = [args.mode]
    if args.stack:
        space["stacks"] = args.stack
    progress, close = _progress(not args.no_progress)
    try:
        search = plan_serving(args.model, args.gpu, workload, targets, space=space or None,
                              refine_top=args.refine, usd_per_gpu_hour=args.usd_per_gpu_hour, top=args.top,
                              progress=progress)
    finally:
        close()
    if args.json:
        _print_json(search.to_dict())
        return EXIT_OK if search.plans else EXIT_FAILED
    print(f"{search.model} on {', '.join(search.gpus)}; targets {search.targets}; workload input "
          f"{workload['input_len']}, output {workload['output_len']}, "
          f"cache hits {workload['cache_hit_rate']}")
    if not search.plans:
        print(search.explain())
        return EXIT_FAILED
    rows = []
    for rank, p in enumerate(search.plans, 1):
        sim_usd = (p.simulated or {}).get("usd_per_million_output_tokens")
        rows.append([rank, p.gpu, p.mode, p.total_gpus, p.usd_per_million_output_tokens, sim_usd,
                     p.output_tokens_per_s_per_gpu, p.tokens_per_s_per_user, p.ttft_estimate_s, p.bound_by,
                     ",".join(p.stacks), p.summary()])
    print(_table(["#", "gpu", "mode", "GPUs", "USD/M out", "simulated", "out tok/s/GPU", "tok/s/user",
                  "TTFT est s", "bound by", "stacks", "deployment"], rows))
    best = search.plans[0]
    print("\nhow to run the best plan:")
    for name, flags in best.flags.items():
        print(f"  {name}: {flags}")
    print("\nPareto front (screened): tok/s/user -> out tok/s/GPU, USD/M out")
    print(_table(["gpu", "tok/s/user", "out tok/s/GPU", "USD/M out", "deployment"],
                 [[p.gpu, p.tokens_per_s_per_user, p.output_tokens_per_s_per_gpu,
                   p.usd_per_million_output_tokens, p.summary()] for p in search.front]))
    print("\nrejected: " + ", ".join(f"{n} {k}" for k, n in search.rejected.items()))
    for note in search.notes:
        print(f"note: {note}")
    return EXIT_OK


def _cmd_plan_train(args: argparse.Namespace) -> int:
    from sim.training.search import plan_training

    progress, close = _progress(not args.no_progress)
    try:
        search = plan_training(args.model, args.gpu, args.num_gpus, seq_len=args.seq_len,
                               global_batch_seqs=args.global_batch_seqs, tokens=args.tokens,
                               precision=args.precision, refine_top=args.refine,
                               usd_per_gpu_hour=args.usd_per_gpu_hour, progress=progress)
    finally:
        close()
    if args.json:
        _print_json(search.to_dict())
        return EXIT_OK
    b = search.best
    print(f"{search.model} on {search.num_gpus} {search.gpu}: step {b.step_time_s:.2f} s, "
          f"{b.tokens_per_s_per_gpu:,.0f} tokens/s/GPU, MFU {b.mfu:.1%}, {b.days:.1f} days, "
          f"{b.gpu_hours:,.0f} GPU-hours, USD {b.cost_usd:,.0f}; bound by {b.bound_by}")
    keys = ("tp", "pp", "virtual_stages", "ep", "moe_tp", "cp", "micro_batch_seqs", "recompute", "schedule")
    rows = []
    for r in search.ranked[:12]:
        rows.append([*(r["plan"].get(k) for k in keys), r["screen_step_s"], r.get("simulated_step_s")])
    print(_table([*keys, "screen s", "simulated s"], rows))
    print("rejected: " + ", ".join(f"{n} {k}" for k, n in search.rejected.items()))
    for note in search.notes[-1:]:
        print(f"note: {note}")
    return EXIT_OK


# --- delegated subcommands --------------------------------------------------------------------

def _delegate(module: str, argv: Sequence[str]) -> int:
    """Run ``module.main(argv)`` (reports, kernels_numba.validate): they own their arguments."""
    target = importlib.import_module(module)
    result = target.main(list(argv))
    return int(result or 0)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    parser = argparse.ArgumentParser(
        prog="moe-sim",
        description="What a Mixture-of-Experts model costs to train and to serve on a GPU fleet.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", metavar="{gpus,models,fit,train,serve,plan,report,validate,sweep,query}"
    )
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {}

    p = sub.add_parser("gpus", help="list the GPU profiles", description="The GPU profiles side by side.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    handlers["gpus"] = _cmd_gpus

    p = sub.add_parser("models", help="list the model catalog", description="The model catalog.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    handlers["models"] = _cmd_models

    p = sub.add_parser(
        "fit", help="does a model fit on a set of GPUs",
        description="Weights per precision recipe, training state and KV cache per GPU.",
        epilog="example: moe-sim fit --model deepseek-v3 --gpu H20 --nodes 2 --context-len 131072",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="catalog name (moe-sim models) or a config.json path")
    p.add_argument("--gpu", required=True, help="GPU name or alias (moe-sim gpus)")
    p.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    p.add_argument("--gpus-per-node", type=int, default=None, help="default: the profile's typical node")
    p.add_argument("--context-len", type=int, default=4096, help="tokens of KV cache per sequence")
    p.add_argument("--kv-dtype", default="bf16", help="KV cache format (bf16, fp8, ...)")
    p.add_argument("--reserve", type=float, default=0.1, help="share of HBM kept back (default 0.1)")
    p.add_argument("--require", choices=["serving", "training"], default=None,
                   help="exit 3 unless the weights (serving) or training state (training) fit")
    p.add_argument("--recipe", default=None, help="recipe checked by --require (default bf16)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    handlers["fit"] = _cmd_fit

    p = sub.add_parser(
        "sweep", help="run a grid of configurations (a TOML spec) into Parquet files",
        description="Expand a grid spec into configurations and evaluate them in chunks: in this process "
        "(-j 1), in local processes, or on a running Dask cluster (--cluster); results as Parquet.",
        epilog=_SWEEP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="the grid spec (TOML; format in sim/grid/spec.py)")
    p.add_argument("--out", default=None, help="results folder (default: sweeps/<spec name>)")
    p.add_argument("-j", "--jobs", type=int, default=None,
                   help="local worker processes without --cluster (default: CPUs; 1 = this process)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://host:8786 (default: none, run locally)")
    p.add_argument("--retries", type=int, default=None,
                   help="further attempts per failing chunk (default: the spec's retries)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    handlers["sweep"] = _cmd_sweep

    p = sub.add_parser(
        "query", help="SQL over a sweep's results (DuckDB; the view is named results)",
        description="Run SQL over a sweep's Parquet files with DuckDB; the view `results` holds every row.",
        epilog='example: moe-sim query sweeps/gpu_wins "SELECT gpu, min(usd_per_million_output_tokens) '
        'FROM results WHERE ok GROUP BY gpu"\nexit codes: 0 ok, 2 no results there or bad SQL',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="a sweep's results folder")
    p.add_argument("sql", help="the query; the table is `results`")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="rows as a JSON list")
    fmt.add_argument("--csv", action="store_true", help="rows as CSV")
    handlers["query"] = _cmd_query

    p = sub.add_parser(
        "plan", help="search for the cheapest serving plan or the fastest training plan",
        description="Plan search: screen every configuration in closed form from the simulators' step "
        "costs, then simulate the best few.",
        epilog="examples:\n  moe-sim plan serve --model deepseek-v3 --gpu H800 --gpu H20\n"
        "  moe-sim plan serve --model deepseek-v4-flash --gpu H20 --tokens-per-s-per-user 50 --json\n"
        "  moe-sim plan train --model deepseek-v3 --gpu H800 --num-gpus 2048",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    plan_sub = p.add_subparsers(dest="plan_command", metavar="{serve,train}", required=True)
    q = plan_sub.add_parser(
        "serve", help="cheapest deployment meeting a latency target",
        description="Cheapest deployment (USD per million output tokens over every GPU, prefill included) "
        "meeting the targets. Defaults: DeepSeek's Day-6 request mix (input 4,383, output 1,211, 56.3%% "
        "cache hits), 20 tokens/s per user, TTFT p99 <= 5 s.")
    q.add_argument("--model", required=True, help="catalog name (moe-sim models)")
    q.add_argument("--gpu", action="append", required=True, help="GPU name; repeat for several")
    q.add_argument("--input-len", dest="input_len", type=float, default=None)
    q.add_argument("--output-len", dest="output_len", type=float, default=None)
    q.add_argument("--cache-hit-rate", dest="cache_hit_rate", type=float, default=None)
    q.add_argument("--tokens-per-s-per-user", dest="tokens_per_s_per_user", type=float, default=None)
    q.add_argument("--tpot-p50-s", dest="tpot_p50_s", type=float, default=None)
    q.add_argument("--ttft-p99-s", dest="ttft_p99_s", type=float, default=None)
    q.add_argument("--max-gpus", dest="max_gpus", type=int, default=None, help="GPU budget")
    q.add_argument("--max-usd-per-hour", dest="max_usd_per_hour", type=float, default=None, help="USD budget")
    q.add_argument("--nodes", type=int, nargs="+", default=None, help="node counts per instance to search")
    q.add_argument("--mode", choices=["colocated", "disaggregated"], default=None, help="default: both")
    q.add_argument("--stack", action="append", default=None, help="serving stack(s) to search; default all")
    q.add_argument("--refine", type=int, default=3, help="plans to simulate (default 3)")
    q.add_argument("--top", type=int, default=10, help="plans to list (default 10)")
    q.add_argument("--usd-per-gpu-hour", dest="usd_per_gpu_hour", type=float, default=None)
    q.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    q.add_argument("--json", action="store_true", help="one JSON object on stdout")
    q.set_defaults(plan_handler=_cmd_plan_serve)
    q = plan_sub.add_parser("train", help="fastest training plan that fits",
                            description="Fastest training plan that fits in memory at the global batch.")
    q.add_argument("--model", required=True)
    q.add_argument("--gpu", required=True)
    q.add_argument("--num-gpus", dest="num_gpus", type=int, required=True)
    q.add_argument("--seq-len", dest="seq_len", type=int, default=4096)
    q.add_argument("--global-batch-seqs", dest="global_batch_seqs", type=int, default=15360)
    q.add_argument("--tokens", type=float, default=14.8e12, help="training tokens to cost (default V3's)")
    q.add_argument("--precision", default="fp8")
    q.add_argument("--refine", type=int, default=4, help="plans to simulate (default 4)")
    q.add_argument("--usd-per-gpu-hour", dest="usd_per_gpu_hour", type=float, default=None)
    q.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    q.add_argument("--json", action="store_true", help="one JSON object on stdout")
    q.set_defaults(plan_handler=_cmd_plan_train)
    handlers["plan"] = lambda a: int(a.plan_handler(a))

    for name, module in (("train", "sim.training.cli"), ("serve", "sim.serving.cli")):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        p = mod.add_parser(sub)
        handlers[name] = mod.run

    sub.add_parser("report", help="run the notebooks over a grid into HTML reports (args: see --help)",
                   add_help=False)
    sub.add_parser(
        "validate",
        help="score the kernel timing model; --end-to-end: predict public third-party measurements "
        "(args: see validate --help, validate --end-to-end --help)",
        add_help=False,
    )
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        if args_list and args_list[0] == "report":
            return _delegate("reports.runner", args_list[1:])
        if args_list and args_list[0] == "validate":
            rest = args_list[1:]
            if "--end-to-end" in rest:  # third-party end-to-end measurements, not the kernels
                return _delegate("reports.end_to_end", [a for a in rest if a != "--end-to-end"])
            return _delegate("kernels_numba.validate", rest)
        parser, handlers = build_parser()
        args = parser.parse_args(args_list)
        if args.command is None:
            parser.print_help()
            return EXIT_BAD_INPUT
        return handlers[args.command](args)
    except ValueError as error:
        print(f"moe-sim: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as error:
        print(f"moe-sim: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
