"""Simulator speed of one revision against another, measured in one run.

    python benchmarks/compare.py --base <git-rev> [--head <git-rev or tree path>] [--repeats N]
                                 [--stat min|median] [--min-ratio R] [--json out.json]

Times the simulator workloads of ``bench_training.py`` and ``bench_serving.py`` (the whole-simulation
wall times they measure, nothing else) on two trees and prints, per workload, the base and head
seconds, the speed ratio base / head (>= 1: head as fast or faster) and whether it meets
``--min-ratio`` (default 0.95, the ">= 0.95x the speed of the commit before the change" of issues
14 and 15). The exit status is 1 when any ratio is below it, 2 on a usage error (an unknown
revision, a path that is not a tree) or a failed run, 0 otherwise.

* ``--base`` is a git revision of this repository (or a directory holding a tree of the project);
  it is checked out into a temporary ``git worktree``, removed afterwards. ``--head`` is the same,
  by default the working tree this script sits in, uncommitted changes included.
* Workloads (rows): ``training.estimate_training`` (``estimate_training`` of V3 on 2,048 H800,
  cold caches), ``training.engine_step`` (the training engine alone on that plan, caches warm) and
  ``serving.day6_100k`` (building and running the Day-6 deployment to 100,000 completed requests).
  The numba kernel benchmarks time kernels, not the simulator, and are left out.
* Every repeat of every workload runs in a fresh Python process (no lru_cache carries over), with
  ``PYTHONPATH`` set to the tree being measured (the worker checks that ``gpus``, ``moe`` and ``sim``
  were imported from it) and the tree's packages byte-compiled beforehand. Base and head alternate,
  A B A B ..., so both see the same machine load; each workload reports the minimum (``--stat
  median``: the median) over ``--repeats`` (default 5).
* The timed code is the ``workload()`` of the benchmark files beside this script for both trees
  (``--bench-code script``, the default), so only the simulator packages differ; a base that
  predates ``workload()`` is measured all the same. ``--bench-code tree`` runs each tree's own
  ``benchmarks/bench_*.py`` instead (both must define ``workload()``), for when a change had to
  edit the benchmarks themselves.
* ``--json out.json`` writes every sample, both revisions and the verdict.

The timings are about 0.4 s, 0.3 s and 3 s on the development machine, so a run of 5 repeats takes
about a minute.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGES = ("gpus", "moe", "sim")
RESULT_MARK = "COMPARE-RESULT "

# workload (table row) -> (benchmark module, key of its workload() result holding wall seconds)
WORKLOADS: dict[str, tuple[str, str]] = {
    "training.estimate_training": ("bench_training", "estimate_training_s"),
    "training.engine_step": ("bench_training", "engine_s"),
    "serving.day6_100k": ("bench_serving", "wall_s"),
}


class CompareError(Exception):
    """A usage error or a failed run: reported as one message, exit status 2."""


@dataclass
class Side:
    """One side of the comparison: what was asked for, and the tree that is measured."""

    spec: str
    tree: Path
    commit: str | None  # the commit checked out, or the tree's HEAD
    dirty: bool = False  # a working tree with uncommitted changes to tracked files

    def describe(self) -> str:
        what = f"{self.spec} = {self.commit[:10]}" if self.commit else self.spec
        if self.dirty:
            what += " + uncommitted changes"
        return f"{what} ({self.tree})"


@dataclass
class Row:
    workload: str
    base_samples: list[float] = field(default_factory=list)
    head_samples: list[float] = field(default_factory=list)


# --- the table and the verdict (pure, tested on fake timings) -------------------------------------


def summarise(rows: Sequence[Row], stat: str, min_ratio: float) -> list[dict[str, Any]]:
    """Per workload: base and head seconds (``stat`` over the samples), ratio base / head, verdict."""
    pick: Callable[[Sequence[float]], float] = min if stat == "min" else statistics.median
    out = []
    for row in rows:
        base, head = pick(row.base_samples), pick(row.head_samples)
        ratio = base / head if head > 0 else float("inf")
        out.append(
            {
                "workload": row.workload,
                "base_s": base,
                "head_s": head,
                "ratio": ratio,
                "ok": ratio >= min_ratio,
                "base_samples": list(row.base_samples),
                "head_samples": list(row.head_samples),
            }
        )
    return out


def format_table(summary: Sequence[dict[str, Any]], min_ratio: float) -> str:
    header = ("workload", "base s", "head s", "base/head", f">= {min_ratio:g}")
    lines = [
        (
            s["workload"],
            f"{s['base_s']:.3f}",
            f"{s['head_s']:.3f}",
            f"{s['ratio']:.3f}",
            "yes" if s["ok"] else "NO",
        )
        for s in summary
    ]
    widths = [max(len(cells[i]) for cells in (header, *lines)) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        padded = [
            cells[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(cells[1:4], widths[1:4], strict=True)),
        ]
        return "  ".join([*padded, cells[4]]).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in lines)])


# --- git -------------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def repo_root(start: Path) -> Path:
    r = _git(start, "rev-parse", "--show-toplevel")
    if r.returncode != 0:
        raise CompareError(f"{start} is not inside a git repository: {r.stderr.strip()}")
    return Path(r.stdout.strip())


def resolve_commit(repo: Path, rev: str) -> str:
    r = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}")
    if r.returncode != 0 or not r.stdout.strip():
        raise CompareError(f"unknown revision {rev!r}: no such commit in the repository at {repo}")
    return r.stdout.strip()


def _is_tree(path: Path) -> bool:
    return all((path / p).is_dir() for p in PACKAGES)


def _tree_side(spec: str, path: Path) -> Side:
    if not _is_tree(path):
        raise CompareError(
            f"{spec!r} is a directory but not a tree of the project (no {'/, '.join(PACKAGES)}/)"
        )
    head = _git(path, "rev-parse", "--verify", "--quiet", "HEAD")
    status = _git(path, "status", "--porcelain", "--untracked-files=no")
    commit = head.stdout.strip() if head.returncode == 0 and head.stdout.strip() else None
    return Side(spec, path.resolve(), commit, dirty=bool(status.returncode == 0 and status.stdout.strip()))


@contextmanager
def checkout(repo: Path, spec: str) -> Iterator[Side]:
    """A side for ``spec``: an existing tree directory as it is, or a git revision checked out into
    a temporary worktree that is removed on the way out."""
    path = Path(spec)
    if path.is_dir() and (path / "sim").is_dir():
        yield _tree_side(spec, path)
        return
    commit = resolve_commit(repo, spec)
    tmp = Path(tempfile.mkdtemp(prefix="benchcmp-"))
    tree = tmp / "tree"
    try:
        r = _git(repo, "worktree", "add", "--detach", str(tree), commit)
        if r.returncode != 0:
            raise CompareError(f"git worktree add {spec} failed: {r.stderr.strip()}")
        if not _is_tree(tree):
            raise CompareError(f"revision {spec!r} holds no tree of the project (no {'/, '.join(PACKAGES)}/)")
        yield Side(spec, tree, commit)
    finally:
        if tree.exists():
            _git(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)
        _git(repo, "worktree", "prune")


# --- running one workload in a fresh process ------------------------------------------------------


def precompile(tree: Path) -> None:
    """Byte-compile the tree's packages so that no side pays for it inside a timed region."""
    for pkg in PACKAGES:
        compileall.compile_dir(str(tree / pkg), quiet=1, workers=1)


def bench_dir_for(tree: Path, bench_code: str) -> Path:
    return HERE if bench_code == "script" else tree / "benchmarks"


def run_module(tree: Path, module: str, bench_dir: Path, timeout_s: float = 1800.0) -> dict[str, float]:
    """Run ``module.workload()`` from ``bench_dir`` in a fresh interpreter importing the simulator
    from ``tree``; returns its result (wall seconds and what was simulated)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", module, str(bench_dir)]
    try:
        p = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise CompareError(f"{module} on {tree} ran past {timeout_s:.0f} s") from e
    marked = [line for line in p.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if p.returncode != 0 or not marked:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
        raise CompareError(f"{module} on {tree} failed (exit {p.returncode}):\n{tail}")
    result: dict[str, float] = json.loads(marked[-1][len(RESULT_MARK) :])
    return result


def worker(module: str, bench_dir: str) -> int:
    """In the fresh process: load the benchmark module, check where the simulator comes from, time."""
    tree = Path(os.environ["PYTHONPATH"]).resolve()
    path = Path(bench_dir) / f"{module}.py"
    spec = importlib.util.spec_from_file_location(module, path)
    if spec is None or spec.loader is None or not path.is_file():
        print(f"no benchmark {path}", file=sys.stderr)
        return 2
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    spec.loader.exec_module(mod)
    if not hasattr(mod, "workload"):
        print(f"{path} has no workload() (it predates compare.py): use --bench-code script", file=sys.stderr)
        return 2
    result = mod.workload()
    for pkg in PACKAGES:
        origin = Path(sys.modules[pkg].__file__ or "") if pkg in sys.modules else None
        if origin is not None and tree not in origin.resolve().parents:
            print(f"{pkg} was imported from {origin}, not from {tree}", file=sys.stderr)
            return 2
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


# --- the comparison -------------------------------------------------------------------------------

Runner = Callable[[Path, str, Path], dict[str, float]]


def compare(
    base: Side,
    head: Side,
    repeats: int,
    bench_code: str,
    workloads: Sequence[str],
    runner: Runner = run_module,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> list[Row]:
    """Every repeat runs each benchmark module once on base, then once on head (A B A B ...)."""
    rows = {w: Row(w) for w in workloads}
    modules = list(dict.fromkeys(WORKLOADS[w][0] for w in workloads))
    total, n = repeats * len(modules) * 2, 0
    for rep in range(repeats):
        for module in modules:
            for label, side in (("base", base), ("head", head)):
                n += 1
                t0 = time.perf_counter()
                result = runner(side.tree, module, bench_dir_for(side.tree, bench_code))
                took = time.perf_counter() - t0
                parts = []
                for w in workloads:
                    mod, key = WORKLOADS[w]
                    if mod == module:
                        if key not in result:
                            raise CompareError(f"{module}.workload() on {side.tree} returned no {key!r}")
                        getattr(rows[w], f"{label}_samples").append(float(result[key]))
                        parts.append(f"{w} {float(result[key]):.3f} s")
                log(f"[{n}/{total}] repeat {rep + 1} {label}: {', '.join(parts)} (process {took:.1f} s)")
    return list(rows.values())


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="compare.py",
        description="Speed of the simulator workloads of bench_training.py and bench_serving.py, base "
        "against head, in one run (see the module docstring).",
    )
    p.add_argument("--base", required=True, help="git revision (or tree directory) to compare against")
    p.add_argument(
        "--head",
        default=None,
        help="git revision or tree directory (default: the working tree this script is in, as it is)",
    )
    p.add_argument("--repeats", type=int, default=5, help="fresh processes per workload and side (default 5)")
    p.add_argument("--stat", choices=("min", "median"), default="min", help="over the repeats (default min)")
    p.add_argument("--min-ratio", type=float, default=0.95, help="least base/head speed ratio (default 0.95)")
    p.add_argument("--json", type=Path, default=None, help="write every sample and the verdict here")
    p.add_argument(
        "--workloads",
        nargs="+",
        choices=tuple(WORKLOADS),
        default=list(WORKLOADS),
        help="the rows to time (default: all)",
    )
    p.add_argument(
        "--bench-code",
        choices=("script", "tree"),
        default="script",
        help="whose benchmarks/bench_*.py to run: the ones beside this script for both trees (default), "
        "or each tree's own",
    )
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.min_ratio <= 0:
        p.error("--min-ratio must be positive")
    return args


def main(argv: Sequence[str] | None = None, *, repo: Path | None = None, runner: Runner = run_module) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"] and len(argv) == 3:
        return worker(argv[1], argv[2])
    args = parse_args(argv)
    try:
        repo = repo_root(HERE if repo is None else repo)
        with ExitStack() as stack:
            base = stack.enter_context(checkout(repo, args.base))
            head = stack.enter_context(checkout(repo, args.head if args.head is not None else str(repo)))
            print(f"base: {base.describe()}", flush=True)
            print(f"head: {head.describe()}", flush=True)
            if runner is run_module:
                for side in (base, head):
                    precompile(side.tree)
            rows = compare(base, head, args.repeats, args.bench_code, args.workloads, runner)
    except CompareError as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    summary = summarise(rows, args.stat, args.min_ratio)
    passed = all(s["ok"] for s in summary)
    print(
        f"{args.stat} of {args.repeats} repeat(s) per workload, each in a fresh process, base and head "
        f"alternating; ratio = base s / head s (>= 1: head as fast or faster)"
    )
    print(format_table(summary, args.min_ratio))
    print("all meet" if passed else "BELOW", f">= {args.min_ratio:g}")
    if args.json is not None:
        doc = {
            "base": {"spec": base.spec, "commit": base.commit, "tree": str(base.tree), "dirty": base.dirty},
            "head": {"spec": head.spec, "commit": head.commit, "tree": str(head.tree), "dirty": head.dirty},
            "repeats": args.repeats,
            "stat": args.stat,
            "order": "ABAB",
            "bench_code": args.bench_code,
            "min_ratio": args.min_ratio,
            "workloads": summary,
            "passed": passed,
        }
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
