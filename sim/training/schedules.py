"""Pipeline schedules as strategy objects behind one interface, chosen by name.

A schedule says, for every pipeline rank, the order in which that rank runs its chunks:
``F`` (forward of one micro-batch through one stage), ``B`` (backward for inputs only; its
weight gradient is deferred to a later ``W``), ``W`` (backward for weights) and ``BW`` (a full
backward: ``B`` immediately followed by ``W`` as one chunk). Two chunks in one :class:`Action`
run mutually overlapped (DualPipe's F&B pairs). The engine (:mod:`sim.training.engine`) turns
these orders into timed events; dependencies between stages come from the data flow alone:
``F(m, s)`` needs ``F(m, s-1)``; ``B(m, s)`` needs ``B(m, s+1)`` (or, on the last stage, the
forward ``F(m, s)``); ``W(m, s)`` needs ``B(m, s)``.

Sources for the orders:

* 1F1B: Narayanan et al., "Memory-efficient pipeline-parallel DNN training" (PipeDream-Flush), 2021.
* Interleaved 1F1B: Narayanan et al., SC'21 (Megatron-LM), section 2.2.2.
* ZB1P (ZB-H1): Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, section 3.
* DualPipe and DualPipeV: the eight-step rank program of ``deepseek-ai/DualPipe``
  (``dualpipe/dualpipe.py`` and ``dualpipe/dualpipev.py``), re-expressed here as chunk orders;
  bubble formulas from DeepSeek-V3 Technical Report Table 2.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

__all__ = [
    "Chunk",
    "Action",
    "ScheduleLayout",
    "Schedule",
    "SCHEDULES",
    "get_schedule",
    "schedule_names",
]

CHUNK_KINDS = ("F", "B", "W", "BW")


@dataclass(frozen=True)
class Chunk:
    """One unit of pipeline work: ``kind`` of micro-batch ``microbatch`` at path position ``stage``.

    ``stage`` counts along the micro-batch's own path through the model (0 = embedding side);
    which rank holds it is :meth:`ScheduleLayout.rank_of`.
    """

    kind: str
    microbatch: int
    stage: int

    def __str__(self) -> str:
        return f"{self.kind}{self.microbatch}@{self.stage}"


@dataclass(frozen=True)
class Action:
    """What a rank does next: one chunk, or two mutually overlapped chunks (F&B).

    ``phase`` names the part of the schedule the action belongs to ("forward", "steady",
    "backward", "weight"); the result maps it onto ISCA'25 Table 4's 1F / 1F1B / 1B / 1W columns.
    """

    chunks: tuple[Chunk, ...]
    phase: str

    @property
    def overlapped(self) -> bool:
        return len(self.chunks) > 1

    def __str__(self) -> str:
        return "&".join(str(c) for c in self.chunks)


@dataclass(frozen=True)
class ScheduleLayout:
    """A schedule instantiated for ``num_ranks`` pipeline ranks and ``num_microbatches``.

    ``num_stages`` is the number of model pieces along a micro-batch's path (PP for 1F1B, ZB1P
    and DualPipe; 2*PP for DualPipeV; PP*v for interleaved 1F1B). ``stages_per_rank`` lists
    the path positions each rank holds, and ``parameter_copies`` how many model pieces'
    parameters a rank keeps (DualPipe keeps two: one per direction).
    """

    name: str
    num_ranks: int
    num_microbatches: int
    num_stages: int
    orders: tuple[tuple[Action, ...], ...]
    stage_owner: tuple[tuple[int, ...], ...]  # [direction][stage] -> rank
    microbatch_direction: tuple[int, ...]
    parameter_copies: int
    model_stage: tuple[tuple[int, ...], ...]  # [direction][stage] -> index of the model piece

    def rank_of(self, microbatch: int, stage: int) -> int:
        return self.stage_owner[self.microbatch_direction[microbatch]][stage]

    def model_piece(self, microbatch: int, stage: int) -> int:
        """Index (0..num_stages-1) of the layer group a chunk runs; equal to ``stage``."""
        return self.model_stage[self.microbatch_direction[microbatch]][stage]

    def pieces_on_rank(self, rank: int) -> tuple[int, ...]:
        """Model pieces whose parameters ``rank`` holds (both directions for DualPipe)."""
        pieces = set()
        for direction, owners in enumerate(self.stage_owner):
            for stage, owner in enumerate(owners):
                if owner == rank:
                    pieces.add(self.model_stage[direction][stage])
        return tuple(sorted(pieces))

    def max_inflight_microbatches(self, rank: int) -> int:
        """Peak number of micro-batches whose activations ``rank`` holds, counted in stage units.

        Walks the rank's order: an F adds one stage's activations, a BW or W releases them
        (a B keeps them until its W, since the weight gradient needs the saved inputs).
        """
        live = 0
        peak = 0
        for action in self.orders[rank]:
            for chunk in action.chunks:
                if chunk.kind == "F":
                    live += 1
                    peak = max(peak, live)
            for chunk in action.chunks:
                if chunk.kind in ("BW", "W"):
                    live -= 1
        return peak


class Schedule:
    """Interface of a pipeline schedule strategy."""

    name: str = ""
    description: str = ""

    def num_model_pieces(self, pp: int, virtual_stages: int) -> int:
        return pp

    def validate(self, pp: int, num_microbatches: int, virtual_stages: int) -> None:
        if pp < 1:
            raise ValueError(f"pp must be at least 1, got {pp}.")
        if num_microbatches < 1:
            raise ValueError(
                f"the number of micro-batches per replica must be at least 1, got {num_microbatches}."
            )

    def build(self, pp: int, num_microbatches: int, virtual_stages: int = 1) -> ScheduleLayout:
        raise NotImplementedError

    def closed_form_bubble_s(self, pp: int, f_s: float, b_s: float, w_s: float, fb_s: float) -> float:
        """Bubble per the published formula. ``b_s`` is the full backward (B + W), as in V3-TR Table 2."""
        raise NotImplementedError


def _layout(
    name: str,
    orders: list[list[Action]],
    num_microbatches: int,
    stage_owner: tuple[tuple[int, ...], ...],
    model_stage: tuple[tuple[int, ...], ...],
    parameter_copies: int,
    microbatch_direction: tuple[int, ...] | None = None,
) -> ScheduleLayout:
    """The layout of one rank order per rank; ``stage_owner`` and ``model_stage`` give, per direction,
    each path position's rank and model piece (their length is the number of stages); every
    micro-batch runs in direction 0 unless ``microbatch_direction`` says otherwise."""
    return ScheduleLayout(
        name=name,
        num_ranks=len(orders),
        num_microbatches=num_microbatches,
        num_stages=len(stage_owner[0]),
        orders=tuple(tuple(o) for o in orders),
        stage_owner=stage_owner,
        microbatch_direction=microbatch_direction or tuple(0 for _ in range(num_microbatches)),
        parameter_copies=parameter_copies,
        model_stage=model_stage,
    )


def _straight_layout(name: str, pp: int, n: int, orders: list[list[Action]]) -> ScheduleLayout:
    """Stage s on rank s, one direction, one copy of the parameters (1F1B, ZB-H1)."""
    return _layout(name, orders, n, (tuple(range(pp)),), (tuple(range(pp)),), parameter_copies=1)


def _one_f_one_b_order(
    total: int, warmup: int, chunk: Callable[[str, int], Chunk], weight_lag: int | None = None
) -> list[Action]:
    """One rank's 1F1B order over its ``total`` forward chunks and as many backward ones: ``warmup``
    forwards, then one forward and one backward at a time, then the remaining backwards;
    ``chunk(kind, k)`` is the rank's k-th chunk of that kind. Backwards are full (BW) or, with
    ``weight_lag`` (ZB-H1), split: each B's W runs once ``weight_lag`` more B's have run (in the
    steady or cool-down phase), and the Ws still waiting at the end run last."""
    order = [Action((chunk("F", k),), "forward") for k in range(warmup)]
    pending: deque[int] = deque()

    def backward(k: int, phase: str, weight_phase: str) -> None:
        if weight_lag is None:
            order.append(Action((chunk("BW", k),), phase))
            return
        order.append(Action((chunk("B", k),), phase))
        pending.append(k)
        if len(pending) > weight_lag:
            order.append(Action((chunk("W", pending.popleft()),), weight_phase))

    for i in range(total - warmup):
        order.append(Action((chunk("F", warmup + i),), "steady"))
        backward(i, "steady", "steady")
    for k in range(total - warmup, total):
        backward(k, "backward", "weight")
    while pending:
        order.append(Action((chunk("W", pending.popleft()),), "weight"))
    return order


class OneFOneB(Schedule):
    name = "1f1b"
    description = "1F1B (PipeDream-Flush): warm-up forwards, one-forward-one-backward, cool-down backwards"

    def build(self, pp: int, num_microbatches: int, virtual_stages: int = 1) -> ScheduleLayout:
        self.validate(pp, num_microbatches, virtual_stages)
        n = num_microbatches
        orders = [
            _one_f_one_b_order(n, min(pp - rank - 1, n), partial(Chunk, stage=rank)) for rank in range(pp)
        ]
        return _straight_layout(self.name, pp, n, orders)

    def closed_form_bubble_s(self, pp: int, f_s: float, b_s: float, w_s: float, fb_s: float) -> float:
        return (pp - 1) * (f_s + b_s)


class ZeroBubbleH1(Schedule):
    """ZB-H1: 1F1B's memory, with each rank's weight-gradient chunks deferred to fill its bubbles.

    Rank r runs 1F1B with split backward: after each B it runs the W of the micro-batch ``r``
    places earlier, so that its W queue holds ``r`` entries (the deeper the rank, the more it
    defers, which lets the first backward travel up the pipeline at B-only speed); the queue is
    drained at the end. With free communication and uniform chunk times the bubble is then
    exactly (PP-1)(F+B-2W), B the full backward (Qi et al. 2024, Table 2; V3-TR Table 2);
    tests/sim/training check this against the engine.
    """

    name = "zb1p"
    description = "zero-bubble ZB-H1: 1F1B with backward split into B and W, W deferred into the bubbles"

    def build(self, pp: int, num_microbatches: int, virtual_stages: int = 1) -> ScheduleLayout:
        self.validate(pp, num_microbatches, virtual_stages)
        n = num_microbatches
        orders = [
            _one_f_one_b_order(n, min(pp - rank - 1, n), partial(Chunk, stage=rank), weight_lag=rank)
            for rank in range(pp)
        ]
        return _straight_layout(self.name, pp, n, orders)

    def closed_form_bubble_s(self, pp: int, f_s: float, b_s: float, w_s: float, fb_s: float) -> float:
        return (pp - 1) * (f_s + b_s - 2 * w_s)


class Interleaved1F1B(Schedule):
    """Megatron-LM interleaved 1F1B with ``virtual_stages`` model pieces per rank (piece c*PP + r)."""

    name = "interleaved-1f1b"
    description = "interleaved 1F1B (Megatron-LM): v model chunks per rank, bubble divided by v"

    def num_model_pieces(self, pp: int, virtual_stages: int) -> int:
        return pp * virtual_stages

    def validate(self, pp: int, num_microbatches: int, virtual_stages: int) -> None:
        super().validate(pp, num_microbatches, virtual_stages)
        if virtual_stages < 1:
            raise ValueError(f"virtual_stages must be at least 1, got {virtual_stages}.")
        if num_microbatches % pp:
            raise ValueError(
                f"interleaved-1f1b needs the micro-batches per replica ({num_microbatches}) to be a "
                f"multiple of pp ({pp})."
            )

    def build(self, pp: int, num_microbatches: int, virtual_stages: int = 2) -> ScheduleLayout:
        self.validate(pp, num_microbatches, virtual_stages)
        n, v = num_microbatches, virtual_stages
        total = n * v

        def chunk(kind: str, k: int, rank: int) -> Chunk:
            """The rank's k-th chunk of ``kind``: forwards go through the pieces in order, backwards
            in reverse, ``pp`` micro-batches at a time."""
            c = (k // pp) % v
            if kind != "F":
                c = v - 1 - c
            mb = (k // (pp * v)) * pp + k % pp
            return Chunk(kind, mb, c * pp + rank)

        orders: list[list[Action]] = []
        for rank in range(pp):
            if n == pp:
                warmup = total
            else:
                warmup = min((pp - rank - 1) * 2 + (v - 1) * pp, total)
            orders.append(_one_f_one_b_order(total, warmup, partial(chunk, rank=rank)))
        stages = pp * v
        owners = (tuple(s % pp for s in range(stages)),)
        return _layout(self.name, orders, n, owners, (tuple(range(stages)),), parameter_copies=v)

    def closed_form_bubble_s(self, pp: int, f_s: float, b_s: float, w_s: float, fb_s: float) -> float:
        """(PP-1)(F+B) with F and B the times of one *virtual* chunk (1/v of a stage's layers):

        the 1F1B bubble divided by v (Narayanan et al., SC'21, section 2.2.2).
        """
        return (pp - 1) * (f_s + b_s)


class _DualPipeProgram:
    """Emits a DualPipe / DualPipeV rank program: the eight steps of ``deepseek-ai/DualPipe``.

    ``half`` is the number of ranks per half (DualPipe: PP/2; DualPipeV: PP), ``hr`` the
    rank's distance from the pipeline end it starts at, ``n_phase`` the micro-batches that go
    through each of the rank's two phases, and ``middle`` whether the rank is where the two
    directions meet (it does not overlap its first F&B pair there, as the repository notes).
    """

    def __init__(
        self, half: int, hr: int, n_phase: int, middle: bool, make_chunk: Callable[[str, int, int], Chunk]
    ) -> None:
        self.half, self.hr, self.n_phase, self.middle = half, hr, n_phase, middle
        self.make_chunk = make_chunk
        self.f_count = [0, 0]
        self.b_count = [0, 0]
        self.weights: deque[Chunk] = deque()
        self.order: list[Action] = []

    def _f(self, phase: int) -> Chunk:
        idx = self.f_count[phase]
        self.f_count[phase] += 1
        return self.make_chunk("F", phase, idx)

    def _b(self, phase: int, zero_bubble: bool) -> Chunk:
        idx = self.b_count[phase]
        self.b_count[phase] += 1
        if zero_bubble:
            self.weights.append(self.make_chunk("W", phase, idx))
            return self.make_chunk("B", phase, idx)
        return self.make_chunk("BW", phase, idx)

    def _emit(self, phase_name: str, *chunks: Chunk) -> None:
        self.order.append(Action(tuple(chunks), phase_name))

    def run(self) -> list[Action]:
        half, hr, n = self.half, self.hr, self.n_phase
        for _ in range((half - hr - 1) * 2):  # step 1: nF0
            self._emit("forward", self._f(0))
        for _ in range(hr + 1):  # step 2: nF0F1
            self._emit("forward", self._f(0))
            self._emit("forward", self._f(1))
        for _ in range(half - hr - 1):  # step 3: nB1W1F1 (zero bubble)
            self._emit("backward", self._b(1, True))
            self._emit("weight", self.weights.popleft())
            self._emit("forward", self._f(1))
        for i in range(n - 2 * half + hr + 1):  # step 4 (main): nF0B1F1B0
            if i == 0 and self.middle:
                self._emit("forward", self._f(0))
                self._emit("backward", self._b(1, False))
            else:
                f0 = self._f(0)
                self._emit("steady", f0, self._b(1, False))
            f1 = self._f(1)
            self._emit("steady", f1, self._b(0, False))
        for _ in range(half - hr - 1):  # step 5: nB1F1B0
            self._emit("backward", self._b(1, False))
            f1 = self._f(1)
            self._emit("steady", f1, self._b(0, False))
        zero_bubble = False
        steps_6 = hr + 1
        for i in range(steps_6):  # step 6: nB1B0, second half with zero bubble
            if i == steps_6 // 2 and hr % 2 == 1:
                zero_bubble = True
            self._emit("backward", self._b(1, zero_bubble))
            if i == steps_6 // 2 and hr % 2 == 0:
                zero_bubble = True
            self._emit("backward", self._b(0, zero_bubble))
        for _ in range(half - hr - 1):  # step 7: nWB0 (zero bubble)
            self._emit("weight", self.weights.popleft())
            self._emit("backward", self._b(0, True))
        for _ in range(hr + 1):  # step 8: nW
            self._emit("weight", self.weights.popleft())
        if self.weights:
            raise RuntimeError("DualPipe program left weight chunks unscheduled")  # internal invariant
        return self.order


class DualPipe(Schedule):
    """DualPipe (DeepSeek-V3 report section 3.2.1): two directions, each rank holds stages r and PP-1-r.

    Micro-batches 0..N/2-1 enter at rank 0 (direction 0), N/2..N-1 at rank PP-1 (direction 1).
    """

    name = "dualpipe"
    description = "DualPipe: bidirectional pipeline with overlapped F&B pairs (DeepSeek-V3)"

    def validate(self, pp: int, num_microbatches: int, virtual_stages: int) -> None:
        super().validate(pp, num_microbatches, virtual_stages)
        if pp % 2 or num_microbatches % 2:
            raise ValueError(
                f"dualpipe needs an even pp and an even number of micro-batches per replica; "
                f"got pp={pp}, micro-batches={num_microbatches}."
            )
        if num_microbatches < 2 * pp:
            raise ValueError(
                f"dualpipe needs at least 2*pp micro-batches per replica ({2 * pp}), got {num_microbatches}."
            )

    def build(self, pp: int, num_microbatches: int, virtual_stages: int = 1) -> ScheduleLayout:
        self.validate(pp, num_microbatches, virtual_stages)
        n = num_microbatches
        half = pp // 2
        n_dir = n // 2
        orders: list[list[Action]] = []
        for rank in range(pp):
            second = rank >= half
            hr = min(rank, pp - 1 - rank)

            def make(kind: str, phase: int, idx: int, rank: int = rank, second: bool = second) -> Chunk:
                direction = phase ^ int(second)
                stage = rank if direction == 0 else pp - 1 - rank
                return Chunk(kind, direction * n_dir + idx, stage)

            middle = rank in (half - 1, half)
            orders.append(_DualPipeProgram(half, hr, n_dir, middle, make).run())
        owners = (tuple(range(pp)), tuple(pp - 1 - s for s in range(pp)))
        directions = tuple(0 if m < n_dir else 1 for m in range(n))
        pieces = (tuple(range(pp)), tuple(range(pp)))
        return _layout(
            self.name, orders, n, owners, pieces, parameter_copies=2, microbatch_direction=directions
        )

    def closed_form_bubble_s(self, pp: int, f_s: float, b_s: float, w_s: float, fb_s: float) -> float:
        return (pp / 2 - 1) * (fb_s + b_s - 3 * w_s)


class DualPipeV(Schedule):
    """DualPipeV ("cut-in-half" DualPipe): one direction, 2*PP model pieces in a V over PP ranks.

    Rank r holds pieces r and 2*PP-1-r; a micro-batch goes down the ranks and back up.
    """

    name = "dualpipev"
    description = "DualPipeV: DualPipe folded into a V over PP ranks, one copy of the parameters"

    def num_model_pieces(self, pp: int, virtual_stages: int) -> int:
        return 2 * pp

    def validate(self, pp: int, num_microbatches: int, virtual_stages: int) -> None:
        super().validate(pp, num_microbatches, virtual_stages)
        if num_microbatches < 2 * pp:
            raise ValueError(
                f"dualpipev needs at least 2*pp micro-batches per replica ({2 * pp}), got {num_microbatches}."
            )

    def build(self, pp: int, num_microbatches: int, virtual_stages: int = 1) -> ScheduleLayout:
        self.validate(pp, num_microbatches, virtual_stages)
        n = num_microbatches
        orders: list[list[Action]] = []
        for rank in range(pp):

            def make(kind: str, phase: int, idx: int, rank: int = rank) -> Chunk:
                stage = rank if phase == 0 else 2 * pp - 1 - rank
                return Chunk(kind, idx, stage)

            orders.append(_DualPipeProgram(pp, rank, n, rank == pp - 1, make).run())
        stages = 2 * pp
        owners = (tuple(s if s < pp else 2 * pp - 1 - s for s in range(stages)),)
        return _layout(self.name, orders, n, owners, (tuple(range(stages)),), parameter_copies=2)

    def closed_form_bubble_s(self, pp: int, f_s: float, b_s: float, w_s: float, fb_s: float) -> float:
        """DualPipe README: (PP/2-1)(F&B+B-3W) where PP counts the pieces (2x the ranks here)."""
        return (pp - 1) * (fb_s + b_s - 3 * w_s)


SCHEDULES: dict[str, Schedule] = {
    s.name: s for s in (OneFOneB(), Interleaved1F1B(), ZeroBubbleH1(), DualPipe(), DualPipeV())
}


def schedule_names() -> list[str]:
    return list(SCHEDULES)


def get_schedule(name: str | Schedule) -> Schedule:
    """Return the schedule strategy named ``name`` (case-insensitive)."""
    if isinstance(name, Schedule):
        return name
    key = str(name).strip().lower().replace("_", "-")
    aliases = {"zb-h1": "zb1p", "zbh1": "zb1p", "zero-bubble": "zb1p", "interleaved": "interleaved-1f1b",
               "dualpipe-v": "dualpipev"}
    key = aliases.get(key, key)
    if key not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {', '.join(SCHEDULES)}.")
    return SCHEDULES[key]


def describe(order: Sequence[Action]) -> str:
    """Compact text of one rank's order, e.g. ``F0@0 F1@0 F0@0&BW5@0``."""
    return " ".join(str(a) for a in order)


def overlap_steady_pairs(layout: ScheduleLayout) -> ScheduleLayout:
    """The layout with each steady-state backward merged with the forward that follows it on its
    rank into one overlapped action, so that one micro-batch's expert all-to-all runs under the
    other's computation: Megatron-LM's 1F1B A2A overlap (``--overlap-moe-expert-parallel-comm
    --delay-wgrad-compute``, MoE README "EP communication overlap": "merging FWD-BWD passes of
    adjacent microbatches"; megatron/core/pipeline_parallel/combined_1f1b.py). A backward is merged
    with the *next* forward (a later micro-batch, or a later virtual stage), never with the forward
    of its own micro-batch, which it depends on."""
    orders: list[tuple[Action, ...]] = []
    for order in layout.orders:
        out: list[Action] = []
        i = 0
        while i < len(order):
            action = order[i]
            nxt = order[i + 1] if i + 1 < len(order) else None
            if (
                nxt is not None
                and action.phase == "steady"
                and nxt.phase == "steady"
                and not action.overlapped
                and not nxt.overlapped
                and action.chunks[0].kind in ("B", "BW")
                and nxt.chunks[0].kind == "F"
            ):
                out.append(Action((nxt.chunks[0], action.chunks[0]), "steady"))
                i += 2
                continue
            out.append(action)
            i += 1
        orders.append(tuple(out))
    return dataclasses.replace(layout, orders=tuple(orders), name=f"{layout.name}+a2a-overlap")
