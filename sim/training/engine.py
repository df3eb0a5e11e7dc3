"""SimPy discrete-event simulation of one optimizer step of a pipeline-parallel replica.

Only one data-parallel replica's pipeline is simulated: every DP (and EP) peer of a pipeline
rank runs the same program at the same times, so the PP ranks stand for all GPUs (symmetric
ranks are simulated once). Each rank has a compute stream and a communication stream (first-come
first-served queues of capacity one) and one queue per network link it sends on ("nvlink", "ib"),
shared by the expert all-to-all and the pipeline sends, so that transfers on the same link
queue behind each other (link contention). The rank runs its schedule's actions in order
(:mod:`sim.training.schedules`); an action waits until its inputs have arrived, then runs its
chunks; the two chunks of an F&B pair run as two SimPy processes that share the streams, so
one's communication overlaps the other's computation exactly where the segments allow.

What a chunk costs is the cost model's business (:class:`CostModel`): a list of segments,
each on one stream, with a duration. The engine knows nothing about GPUs or models.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import simpy

from sim.training.schedules import Action, Chunk, ScheduleLayout

__all__ = ["Segment", "CostModel", "RankTimeline", "EngineResult", "TraceEvent", "simulate_step"]

STREAMS = ("compute", "comm")


@dataclass(frozen=True)
class Segment:
    """A piece of a chunk on one stream.

    ``stream`` is "compute" or "comm"; ``category`` names what it is for the breakdown
    (compute: "gemm", "attention", "other"; comm: "ep_comm", "pp_comm", "dp_comm",
    "optimizer" counts as compute); ``link`` is the network link it occupies ("nvlink", "ib",
    or None for none); ``bound_by`` the resource that limits it ("compute", "hbm", "nvlink",
    "ib", "latency").
    """

    stream: str
    duration_s: float
    category: str
    link: str | None = None
    bound_by: str = "compute"
    mix: tuple[tuple[str, float], ...] = ()  # compute: (category, share of the time) pairs
    compute_bound_s: float = 0.0  # the part of duration_s limited by math throughput (SM count)


class CostModel(Protocol):
    """What the engine asks of a cost model."""

    def chunk_segments(self, chunk: Chunk, piece: int, rank: int, overlapped: bool) -> Sequence[Segment]:
        """Segments of one chunk, in order, run on rank ``rank`` (model piece ``piece``)."""
        ...

    def send_segment(self, chunk: Chunk, piece: int, src_rank: int, dst_rank: int) -> Segment | None:
        """The pipeline send of a finished chunk's output to ``dst_rank``; None when free."""
        ...

    def grad_sync_segments(self, rank: int, piece: int) -> Sequence[Segment]:
        """Data-parallel gradient reduction of one piece, launched when its last weight gradient is done."""
        ...

    def tail_segments(self, rank: int) -> Sequence[Segment]:
        """What a rank does after its pipeline work: remaining DP comm, optimizer, parameter all-gather."""
        ...


@dataclass
class RankTimeline:
    """What one rank did: busy intervals per stream and the schedule actions it ran."""

    rank: int
    # start, end, (category, share) pairs, bound
    compute: list[tuple[float, float, tuple[tuple[str, float], ...], str]] = field(default_factory=list)
    comm: list[tuple[float, float, str, str]] = field(default_factory=list)  # start, end, category, link
    # ready, start, end, phase, label
    actions: list[tuple[float, float, float, str, str]] = field(default_factory=list)
    pipeline_end_s: float = 0.0
    end_s: float = 0.0


@dataclass(frozen=True)
class EngineResult:
    step_time_s: float
    critical_rank: int
    timelines: tuple[RankTimeline, ...]
    num_events: int

    def order_of(self, rank: int) -> list[str]:
        """Labels of the actions of ``rank`` in the order they started."""
        return [a[4] for a in sorted(self.timelines[rank].actions, key=lambda a: (a[1], a[0]))]


class TraceEvent(NamedTuple):
    """One line of the engine's optional event log (:func:`simulate_step` with ``trace=[]``).

    ``what`` is "start" when rank ``rank`` launches the chunk (its inputs have arrived and the
    rank's previous action is done; its first segment may still queue behind the other chunk of
    an F&B pair) and "end" when the chunk's last segment finishes. Lines come in the order the
    simulation processes them, ties at one time included.
    """

    time_s: float
    rank: int
    what: str
    kind: str
    microbatch: int
    stage: int


def _key(kind: str, chunk: Chunk) -> tuple[str, int, int]:
    return (kind, chunk.microbatch, chunk.stage)


class _Simulation:
    def __init__(
        self, layout: ScheduleLayout, cost: CostModel, record: bool, trace: list[TraceEvent] | None = None
    ) -> None:
        self.layout = layout
        self.cost = cost
        self.record = record
        self.trace = trace
        self.env = simpy.Environment()
        self.free_at = [dict.fromkeys(STREAMS, 0.0) for _ in range(layout.num_ranks)]
        self.link_free_at: list[dict[str, float]] = [{} for _ in range(layout.num_ranks)]
        self.events: dict[tuple[str, int, int], simpy.Event] = {}
        self.timelines = [RankTimeline(rank=r) for r in range(layout.num_ranks)]
        self.num_events = 0
        # How many weight-gradient chunks each (rank, piece) still has to run before its DP sync.
        self.weights_left: dict[tuple[int, int], int] = defaultdict(int)
        for rank, order in enumerate(layout.orders):
            for action in order:
                for chunk in action.chunks:
                    if chunk.kind in ("W", "BW"):
                        piece = layout.model_piece(chunk.microbatch, chunk.stage)
                        self.weights_left[(rank, piece)] += 1
        self.sync_processes: list[list[Any]] = [[] for _ in range(layout.num_ranks)]

    def event(self, key: tuple[str, int, int]) -> simpy.Event:
        ev = self.events.get(key)
        if ev is None:
            ev = self.env.event()
            self.events[key] = ev
        return ev

    # --- dependencies --------------------------------------------------------------------
    def dependencies(self, chunk: Chunk) -> list[simpy.Event]:
        last = self.layout.num_stages - 1
        if chunk.kind == "F":
            return [self.event(("fin", chunk.microbatch, chunk.stage))] if chunk.stage > 0 else []
        if chunk.kind in ("B", "BW"):
            deps = [self.event(("Fdone", chunk.microbatch, chunk.stage))]
            if chunk.stage < last:
                deps.append(self.event(("gin", chunk.microbatch, chunk.stage)))
            return deps
        return [self.event(("Bdone", chunk.microbatch, chunk.stage))]

    # --- running ---------------------------------------------------------------------------
    def reserve(
        self, rank: int, stream: str | None, link: str | None, duration_s: float
    ) -> tuple[float, float]:
        """First-come-first-served reservation of a stream and a link; returns (start, end).

        A stream or link of capacity one whose holders know their duration when they ask is a
        FIFO queue: the request made first starts first, when both are free. Keeping the
        time each becomes free is equivalent to a SimPy ``Resource`` and costs one event
        (the timeout) per segment instead of four.
        """
        start = self.env.now
        if stream is not None:
            start = max(start, self.free_at[rank][stream])
        if link is not None:
            start = max(start, self.link_free_at[rank].get(link, 0.0))
        end = start + duration_s
        if stream is not None:
            self.free_at[rank][stream] = end
        if link is not None:
            self.link_free_at[rank][link] = end
        return start, end

    def run_segments(self, rank: int, segments: Sequence[Segment]):  # type: ignore[no-untyped-def]
        env = self.env
        timeline = self.timelines[rank]
        for seg in segments:
            if seg.duration_s <= 0.0:
                continue
            start, end = self.reserve(rank, seg.stream, seg.link, seg.duration_s)
            yield env.timeout(end - env.now)
            self.num_events += 1
            if self.record:
                if seg.stream == "compute":
                    mix = seg.mix or ((seg.category, 1.0),)
                    timeline.compute.append((start, end, mix, seg.bound_by))
                else:
                    timeline.comm.append((start, end, seg.category, seg.link or ""))

    def send(self, rank: int, segment: Segment | None, key: tuple[str, int, int]):  # type: ignore[no-untyped-def]
        env = self.env
        if segment is not None and segment.duration_s > 0.0:
            start, end = self.reserve(rank, None, segment.link, segment.duration_s)
            yield env.timeout(end - env.now)
            self.num_events += 1
            if self.record:
                self.timelines[rank].comm.append((start, end, segment.category, segment.link or ""))
        self.event(key).succeed()

    def run_chunk(self, rank: int, chunk: Chunk, overlapped: bool):  # type: ignore[no-untyped-def]
        layout = self.layout
        piece = layout.model_piece(chunk.microbatch, chunk.stage)
        segments = self.cost.chunk_segments(chunk, piece, rank, overlapped)
        mb, stage = chunk.microbatch, chunk.stage
        trace = self.trace
        if trace is not None:
            trace.append(TraceEvent(self.env.now, rank, "start", chunk.kind, mb, stage))
        yield from self.run_segments(rank, segments)
        if trace is not None:
            trace.append(TraceEvent(self.env.now, rank, "end", chunk.kind, mb, stage))
        last = layout.num_stages - 1
        if chunk.kind == "F":
            self.event(("Fdone", mb, stage)).succeed()
            if stage < last:
                dst = layout.rank_of(mb, stage + 1)
                seg = self.cost.send_segment(chunk, piece, rank, dst) if dst != rank else None
                self.env.process(self.send(rank, seg, ("fin", mb, stage + 1)))
        elif chunk.kind in ("B", "BW"):
            self.event(("Bdone", mb, stage)).succeed()
            if stage > 0:
                dst = layout.rank_of(mb, stage - 1)
                seg = self.cost.send_segment(chunk, piece, rank, dst) if dst != rank else None
                self.env.process(self.send(rank, seg, ("gin", mb, stage - 1)))
        if chunk.kind in ("W", "BW"):
            self.weights_left[(rank, piece)] -= 1
            if self.weights_left[(rank, piece)] == 0:
                sync = self.cost.grad_sync_segments(rank, piece)
                if sync:
                    self.sync_processes[rank].append(self.env.process(self.run_segments(rank, sync)))

    def rank_program(self, rank: int):  # type: ignore[no-untyped-def]
        env = self.env
        timeline = self.timelines[rank]
        action: Action
        for action in self.layout.orders[rank]:
            ready_from = env.now
            deps = [d for chunk in action.chunks for d in self.dependencies(chunk)]
            pending = [d for d in deps if not d.triggered]
            if pending:
                yield env.all_of(pending)
            start = env.now
            if action.overlapped:
                procs = [env.process(self.run_chunk(rank, c, True)) for c in action.chunks]
                yield env.all_of(procs)
            else:
                yield from self.run_chunk(rank, action.chunks[0], False)
            timeline.actions.append((ready_from, start, env.now, action.phase, str(action)))
        timeline.pipeline_end_s = env.now
        if self.sync_processes[rank]:
            yield env.all_of(self.sync_processes[rank])
        yield from self.run_segments(rank, self.cost.tail_segments(rank))
        timeline.end_s = env.now

    def run(self) -> EngineResult:
        for rank in range(self.layout.num_ranks):
            self.env.process(self.rank_program(rank))
        self.env.run()
        unfinished = [t.rank for t in self.timelines if len(t.actions) != len(self.layout.orders[t.rank])]
        if unfinished:
            raise RuntimeError(f"schedule {self.layout.name} deadlocked on ranks {unfinished}")
        ends = [t.end_s for t in self.timelines]
        critical = max(range(len(ends)), key=lambda r: (ends[r], -r))
        return EngineResult(
            step_time_s=ends[critical],
            critical_rank=critical,
            timelines=tuple(self.timelines),
            num_events=self.num_events,
        )


def simulate_step(
    layout: ScheduleLayout, cost: CostModel, record: bool = True, trace: list[TraceEvent] | None = None
) -> EngineResult:
    """Simulate one optimizer step of one pipeline replica; return per-rank timelines.

    ``trace``: a list to which the engine appends a :class:`TraceEvent` as each chunk starts and
    ends (off when None, the default: then the log costs one test per chunk and nothing more).
    """
    return _Simulation(layout, cost, record, trace).run()


# --- turning timelines into explanations -----------------------------------------------------

_COMM_PRIORITY = ("ep_comm", "pp_comm", "dp_comm")


def breakdown(timeline: RankTimeline) -> dict[str, float]:
    """Split ``timeline.end_s`` into compute categories, exposed communication and idle time.

    Sweep over the rank's busy intervals: a moment counts for the compute running then (split
    by the segment's category mix); if no compute runs, for the first active communication
    kind (EP, PP, DP, TP, CP); otherwise it is pipeline bubble. The values sum to ``end_s``.
    """
    points: list[tuple[float, int, int, str]] = []
    mixes: list[tuple[tuple[str, float], ...]] = []
    for i, (start, end, mix, _) in enumerate(timeline.compute):
        mixes.append(mix)
        points.append((start, 1, i, "compute"))
        points.append((end, -1, i, "compute"))
    for start, end, category, _ in timeline.comm:
        points.append((start, 1, -1, category))
        points.append((end, -1, -1, category))
    points.sort(key=lambda p: (p[0], p[1]))
    active_comm: dict[str, int] = defaultdict(int)
    # open compute segments by first opening (each segment opens and closes once; a closed one leaves)
    active_compute: dict[int, int] = {}
    out: dict[str, float] = defaultdict(float)
    last = 0.0
    for t, delta, index, name in points:
        if t > last:
            span = t - last
            running = next((i for i, c in active_compute.items() if c > 0), None)
            if running is not None:
                for category, share in mixes[running]:
                    out["compute_" + category] += span * share
            else:
                out[_exposed(active_comm)] += span
            last = t
        if index >= 0:
            count = active_compute.get(index, 0) + delta
            if count == 0:
                active_compute.pop(index, None)
            else:
                active_compute[index] = count
        else:
            active_comm[name] += delta
    if timeline.end_s > last:
        out["bubble"] += timeline.end_s - last
    return dict(out)


def _exposed(active: dict[str, int]) -> str:
    for kind in _COMM_PRIORITY:
        if active.get(kind, 0) > 0:
            return "exposed_" + kind
    for kind, count in active.items():
        if count > 0:
            return "exposed_" + kind
    return "bubble"


def phase_breakdown(timeline: RankTimeline) -> dict[str, float]:
    """Split ``timeline.end_s`` by schedule phase (ISCA'25 Table 4 columns).

    Actions count for their phase from start to end ("forward" = 1F, "steady" = 1F1B,
    "backward" = 1B, "weight" = 1W); waiting for inputs is "bubble"; what follows the pipeline
    (DP synchronisation, optimizer) is "optimizer".
    """
    out: dict[str, float] = defaultdict(float)
    last = 0.0
    for ready, start, end, phase, _ in sorted(timeline.actions, key=lambda a: a[1]):
        out["bubble"] += max(0.0, start - max(ready, last))
        out[phase] += end - start
        last = end
    out["bubble"] += 0.0
    out["optimizer"] += timeline.end_s - last
    return dict(out)
