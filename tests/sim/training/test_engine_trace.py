"""The training engine's exact event log for the smallest pipeline, as SimPy's own tests assert logs.

Two micro-batches through two pipeline stages under 1F1B, with constant costs: forward 1 s, full
backward (BW) 3 s, each pipeline send 0.5 s on the sender's InfiniBand link. Every time is a sum
of halves, so the log is exact in binary floating point and is compared with ``==``.
"""

from __future__ import annotations

from sim.training.engine import Segment, TraceEvent, simulate_step
from sim.training.schedules import get_schedule

FORWARD_S, BACKWARD_S, SEND_S = 1.0, 3.0, 0.5


class ConstantCost:
    """Every chunk one compute segment of a fixed length; every pipeline send a fixed length."""

    def chunk_segments(self, chunk, piece, rank, overlapped):  # type: ignore[no-untyped-def]
        return [Segment("compute", {"F": FORWARD_S, "BW": BACKWARD_S}[chunk.kind], "gemm")]

    def send_segment(self, chunk, piece, src, dst):  # type: ignore[no-untyped-def]
        return Segment("comm", SEND_S, "pp_comm", "ib")

    def grad_sync_segments(self, rank, piece):  # type: ignore[no-untyped-def]
        return []

    def tail_segments(self, rank):  # type: ignore[no-untyped-def]
        return []


# Worked by hand from the 1F1B orders (stage 0: F0 F1 BW0 BW1; stage 1: F0 BW0 F1 BW1):
#   stage 0 runs F0 over [0, 1] and F1 over [1, 2]; F0's activations reach stage 1 at 1.5, F1's at
#   2.5 (the send of F1 starts at 2, when F1 ends). Stage 1 runs F0 over [1.5, 2.5], BW0 over
#   [2.5, 5.5] (its gradient reaches stage 0 at 6), F1 over [5.5, 6.5] and BW1 over [6.5, 9.5]
#   (gradient at 10). Stage 0 runs BW0 over [6, 9], waits, and BW1 over [10, 13].
# Ties at 1, 2.5, 5.5 and 6.5: an end comes before the next start on the same rank.
EXPECTED = [
    (0.0, 0, "start", "F", 0),
    (1.0, 0, "end", "F", 0),
    (1.0, 0, "start", "F", 1),
    (1.5, 1, "start", "F", 0),
    (2.0, 0, "end", "F", 1),
    (2.5, 1, "end", "F", 0),
    (2.5, 1, "start", "BW", 0),
    (5.5, 1, "end", "BW", 0),
    (5.5, 1, "start", "F", 1),
    (6.0, 0, "start", "BW", 0),
    (6.5, 1, "end", "F", 1),
    (6.5, 1, "start", "BW", 1),
    (9.0, 0, "end", "BW", 0),
    (9.5, 1, "end", "BW", 1),
    (10.0, 0, "start", "BW", 1),
    (13.0, 0, "end", "BW", 1),
]


def test_1f1b_two_stages_two_microbatches_exact_log() -> None:
    layout = get_schedule("1f1b").build(2, 2)
    trace: list[TraceEvent] = []
    result = simulate_step(layout, ConstantCost(), trace=trace)
    # 1F1B places stage s on rank s
    assert all(event.rank == event.stage for event in trace)
    assert [(e.time_s, e.stage, e.what, e.kind, e.microbatch) for e in trace] == EXPECTED
    assert result.step_time_s == 13.0 and result.critical_rank == 0
    # stage 0 works 2 x (F + BW) = 8 s and waits over [2, 6] and [9, 10]
    busy = sum(end - start for start, end, _, _ in result.timelines[0].compute)
    assert busy == 2 * (FORWARD_S + BACKWARD_S) == 8.0


def test_log_is_off_by_default_and_changes_nothing() -> None:
    layout = get_schedule("1f1b").build(2, 2)
    plain = simulate_step(layout, ConstantCost())
    trace: list[TraceEvent] = []
    traced = simulate_step(layout, ConstantCost(), trace=trace)
    assert len(trace) == 2 * 2 * 2 * 2  # 2 chunks (F, BW) x 2 micro-batches x 2 stages, start and end
    assert plain == traced  # same timelines, times and event count
