"""Run a sweep's chunks in this process, in local worker processes, or on a Dask cluster.

``sweep(spec, results_dir)`` splits the configurations into chunks of ``chunk_size``; each chunk
is one task (``sim.grid.evaluate.evaluate_range``: the spec and an index range go out, rows come
back) and one Parquet file, written by the process that called ``sweep`` (workers need no shared
disk). Engines:

* ``jobs=1``, no cluster: every chunk in this process, one after another;
* ``jobs=N``: a pool of N local processes (``concurrent.futures``, spawned); nothing is started
  beyond them and nothing outlives the call;
* ``cluster=ADDRESS`` (or a ``distributed.Client``): tasks go to a running Dask scheduler. When
  a worker dies, the scheduler gives its tasks to another worker (Dask's own rule, up to
  ``distributed.scheduler.allowed-failures`` deaths per task); each task's result arrives once, and
  a chunk's file is written once, so every configuration is in the results exactly once.

A chunk that raises (a bug, a worker lost too often, a broken pool) is recorded in the manifest
with its error and tried again, at most ``retries`` more times; it is never written in part. A
configuration the simulator refuses is a row with its error (``sim.grid.evaluate``), not a failure.
Chunk files already present are skipped, so rerunning the same spec into the same folder resumes.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim.grid import store
from sim.grid.evaluate import evaluate_range
from sim.grid.provenance import run_provenance
from sim.grid.spec import SweepSpec, as_spec

_MANIFEST_INTERVAL_S = 2.0  # rewrite the manifest at most this often while chunks complete


@dataclass(frozen=True)
class SweepSummary:
    """What one call of :func:`sweep` did."""

    results_dir: str
    engine: str
    configurations: int
    chunks: int
    chunks_skipped: int  # present before this call (resumed)
    chunks_written: int
    chunks_failed: int
    configurations_evaluated: int
    refused_configurations: int  # rows written with ok = False (the simulator's refusals)
    attempts_failed: int  # chunk attempts that raised, retried or not
    seconds: float
    configurations_per_s: float
    failures: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """Every chunk's file is present."""
        return self.chunks_failed == 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["failures"] = list(self.failures)
        out["ok"] = self.ok
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _open_results(spec: SweepSpec, results_dir: Path) -> dict[str, Any]:
    """The manifest to continue: the existing one for this spec, or a new one. Another spec's results
    in the folder are an error, not overwritten."""
    results_dir.mkdir(parents=True, exist_ok=True)
    store.remove_temporaries(results_dir)
    manifest = store.read_manifest(results_dir)
    if manifest is None:
        if store.done_chunks(results_dir):
            raise ValueError(
                f"{results_dir} holds chunk files but no {store.MANIFEST}: it is not this sweep's results "
                "folder; choose an empty or new folder."
            )
        provenance = run_provenance()
        return {
            "format": store.FORMAT_VERSION,
            "spec_sha256": spec.sha256,
            "spec": spec.to_dict(),
            "created": _now(),
            "provenance": {
                "stack": json.loads(provenance["stack_json"]),
                "calibration_sha256": json.loads(provenance["calibration_sha256_json"]),
            },
            "chunks": {},
            "runs": [],
        }
    if manifest.get("spec_sha256") != spec.sha256:
        other = manifest.get("spec", {}).get("path")
        raise ValueError(
            f"{results_dir} holds the results of another sweep (spec {other!r}, "
            f"digest {str(manifest.get('spec_sha256'))[:12]}); this spec's digest is {spec.sha256[:12]}. "
            "Use a new results folder, or the same spec (kind, seed, chunk_size and grid) to resume."
        )
    return manifest


class _Progress:
    """A progress bar on stderr (tqdm when installed), counting configurations."""

    def __init__(self, enabled: bool, total: int, initial: int, description: str) -> None:
        self._bar: Any = None
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._bar = tqdm(
            total=total, initial=initial, unit="config", file=sys.stderr, desc=description, dynamic_ncols=True
        )

    def update(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _ProcessBackend:
    """A spawned process pool, replaced when a dead worker breaks it (its tasks then fail, and retry)."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        self._pool = self._new()

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, spec: SweepSpec, start: int, end: int, key: str) -> Future[Any]:
        try:
            return self._pool.submit(evaluate_range, spec, start, end)
        except (BrokenProcessPool, RuntimeError):
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            return self._pool.submit(evaluate_range, spec, start, end)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _DaskBackend:
    """Tasks on a Dask cluster through a client (connected here when given an address)."""

    def __init__(self, cluster: Any) -> None:
        from distributed import Client

        self._own = isinstance(cluster, str)
        self.client = Client(cluster, set_as_default=False) if isinstance(cluster, str) else cluster
        scheduler = getattr(self.client, "scheduler", None)
        self.address = str(getattr(scheduler, "address", "an unknown address"))

    def submit(self, spec: SweepSpec, start: int, end: int, key: str) -> Any:
        return self.client.submit(evaluate_range, spec, start, end, key=key, pure=False)

    def close(self) -> None:
        if self._own:
            self.client.close()


def sweep(
    spec: SweepSpec | Mapping[str, Any] | str | Path,
    results_dir: str | Path,
    *,
    jobs: int = 1,
    cluster: Any = None,
    retries: int | None = None,
    progress: bool = False,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
) -> SweepSummary:
    """Evaluate every configuration of ``spec`` not yet in ``results_dir``; see the module docstring.

    ``spec``: a :class:`SweepSpec`, a dict with a spec file's contents, or a TOML file's path.
    ``jobs``: local worker processes when no ``cluster`` is given (1: this process alone).
    ``cluster``: a Dask scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``.
    ``retries``: further attempts for a failing chunk (default: the spec's ``retries``).
    ``on_chunk``: called in this process with each chunk's record as it is written or fails.
    """
    spec = as_spec(spec)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number >= 1 of worker processes, got {jobs!r}.")
    retries = spec.retries if retries is None else retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0, got {retries!r}.")
    results = Path(results_dir)
    manifest = _open_results(spec, results)
    present = store.done_chunks(results)
    pending = [i for i in range(spec.num_chunks) if i not in present]
    for index in pending:  # a chunk that failed in an earlier call gets its full retries again
        manifest["chunks"].pop(str(index), None)
    skipped = spec.num_chunks - len(pending)
    done_before = sum(
        spec.chunk_bounds(i)[1] - spec.chunk_bounds(i)[0] for i in present if i < spec.num_chunks
    )

    backend: _ProcessBackend | _DaskBackend | None = None
    if cluster is not None:
        backend = _DaskBackend(cluster)
        engine = f"dask {backend.address}"
    elif jobs > 1 and len(pending) > 1:
        backend = _ProcessBackend(min(jobs, len(pending)))
        engine = f"{backend.jobs} local processes"
    else:
        engine = "this process"
    started = time.perf_counter()
    run_record: dict[str, Any] = {"started": _now(), "engine": engine}
    manifest["runs"].append(run_record)
    bar = _Progress(progress, spec.size, done_before, description=spec.title or "sweep")
    counts = {"written": 0, "failed": 0, "evaluated": 0, "refused": 0, "attempts_failed": 0}
    failures: list[dict[str, Any]] = []
    last_manifest = 0.0

    def save_manifest(force: bool = False) -> None:
        nonlocal last_manifest
        if force or time.perf_counter() - last_manifest >= _MANIFEST_INTERVAL_S:
            store.write_manifest(results, manifest)
            last_manifest = time.perf_counter()

    def record(index: int) -> dict[str, Any]:
        start, end = spec.chunk_bounds(index)
        entry: dict[str, Any] = manifest["chunks"].setdefault(
            str(index), {"start": start, "end": end, "attempts": 0, "errors": []}
        )
        return entry

    def finished(index: int, rows: list[dict[str, Any]], seconds: float) -> None:
        start, end = spec.chunk_bounds(index)
        if [r["config_id"] for r in rows] != list(range(start, end)):
            raise RuntimeError(f"chunk {index} came back with the wrong configurations")
        path = store.write_chunk(results, index, spec.kind, rows)
        refused = sum(1 for r in rows if not r["ok"])
        entry = record(index)
        entry.update(
            status="done", file=path.name, rows=len(rows), refused=refused, seconds=round(seconds, 3)
        )
        counts["written"] += 1
        counts["evaluated"] += len(rows)
        counts["refused"] += refused
        bar.update(len(rows))
        if on_chunk is not None:
            on_chunk({"chunk": index, **entry})
        save_manifest()

    def failed_attempt(index: int, error: BaseException) -> bool:
        """Record a failed attempt; True when the chunk may be tried again."""
        entry = record(index)
        entry["errors"].append(f"{type(error).__name__}: {error}")
        counts["attempts_failed"] += 1
        if entry["attempts"] <= retries:
            entry["status"] = "retrying"
            return True
        entry["status"] = "failed"
        counts["failed"] += 1
        failures.append({"chunk": index, "errors": list(entry["errors"])})
        if on_chunk is not None:
            on_chunk({"chunk": index, **entry})
        save_manifest()
        return False

    save_manifest(force=True)
    try:
        if backend is None:
            for index in pending:
                while True:
                    record(index)["attempts"] += 1
                    began = time.perf_counter()
                    try:
                        rows = evaluate_range(spec, *spec.chunk_bounds(index))
                    except Exception as error:  # a failing chunk is recorded and retried, not fatal
                        if failed_attempt(index, error):
                            continue
                        break
                    finished(index, rows, time.perf_counter() - began)
                    break
        else:
            _drive(spec, backend, pending, record, finished, failed_attempt)
    finally:
        if backend is not None:
            backend.close()
        bar.close()
        seconds = time.perf_counter() - started
        summary = SweepSummary(
            results_dir=str(results),
            engine=engine,
            configurations=spec.size,
            chunks=spec.num_chunks,
            chunks_skipped=skipped,
            chunks_written=counts["written"],
            chunks_failed=counts["failed"],
            configurations_evaluated=counts["evaluated"],
            refused_configurations=counts["refused"],
            attempts_failed=counts["attempts_failed"],
            seconds=seconds,
            configurations_per_s=counts["evaluated"] / seconds if seconds > 0 else 0.0,
            failures=tuple(failures),
        )
        run_record.update(finished=_now(), summary=summary.to_dict())
        save_manifest(force=True)
    return summary


def _drive(
    spec: SweepSpec,
    backend: _ProcessBackend | _DaskBackend,
    pending: list[int],
    record: Callable[[int], dict[str, Any]],
    finished: Callable[[int, list[dict[str, Any]], float], None],
    failed_attempt: Callable[[int, BaseException], bool],
) -> None:
    """Submit every pending chunk, then take results as they complete (a queue fed by done-callbacks,
    the same for both kinds of future), resubmitting failed chunks while their retries last."""
    done: queue.Queue[Any] = queue.Queue()
    active: dict[Any, tuple[int, float]] = {}
    call = uuid.uuid4().hex[:8]  # task keys unique to this call: a scheduler never hands back an old result

    def submit(index: int) -> None:
        entry = record(index)
        entry["attempts"] += 1
        key = f"sweep-{spec.sha256[:12]}-{call}-chunk-{index}-attempt-{entry['attempts']}"
        future = backend.submit(spec, *spec.chunk_bounds(index), key=key)
        active[future] = (index, time.perf_counter())
        future.add_done_callback(done.put)

    for index in pending:
        submit(index)
    while active:
        future = done.get()
        if future not in active:
            continue
        index, began = active.pop(future)
        try:
            rows = future.result()
        except Exception as error:  # recorded in the manifest; retried while retries last
            if failed_attempt(index, error):
                submit(index)
            continue
        finished(index, rows, time.perf_counter() - began)
