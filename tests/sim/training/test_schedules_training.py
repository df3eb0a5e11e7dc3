"""Schedule tests: DualPipe order vs the repository's rank program, closed-form bubbles, skew/contention."""

from __future__ import annotations

import pytest

from sim.training.engine import Segment, breakdown, simulate_step
from sim.training.schedules import get_schedule, schedule_names


class UniformCost:
    """Free communication; every chunk of every stage takes the same time (B = backward for inputs)."""

    def __init__(self, f: float, b: float, w: float, send_s: float = 0.0, a2a_s: float = 0.0) -> None:
        self.f, self.b, self.w, self.send_s, self.a2a_s = f, b, w, send_s, a2a_s

    def chunk_segments(self, chunk, piece, rank, overlapped):  # type: ignore[no-untyped-def]
        d = {"F": self.f, "B": self.b, "W": self.w, "BW": self.b + self.w}[chunk.kind]
        segs = [Segment("compute", d, "gemm")]
        if self.a2a_s and chunk.kind != "W":
            segs.append(Segment("comm", self.a2a_s, "ep_comm", "ib"))
        return segs

    def send_segment(self, chunk, piece, src, dst):  # type: ignore[no-untyped-def]
        return Segment("comm", self.send_s, "pp_comm", "ib") if self.send_s else None

    def grad_sync_segments(self, rank, piece):  # type: ignore[no-untyped-def]
        return []

    def tail_segments(self, rank):  # type: ignore[no-untyped-def]
        return []


def _expected_dualpipe_rank(rank: int, pp: int, n: int) -> list[str]:
    """Transcription of deepseek-ai/DualPipe dualpipe.py step() as text tokens per compute call.

    Tokens: F<d>, B<d> (full backward), b<d> (backward for inputs, W deferred), W, F<d>&B<d>.
    d is the direction (0 = enters at rank 0). Written independently of sim.training.schedules.
    """
    half = pp // 2
    hr = min(rank, pp - 1 - rank)
    second = int(rank >= half)
    middle = rank in (half - 1, half)

    def d(phase: int) -> int:
        return phase ^ second

    out: list[str] = []
    out += [f"F{d(0)}"] * ((half - hr - 1) * 2)
    out += [f"F{d(0)}", f"F{d(1)}"] * (hr + 1)
    out += [f"b{d(1)}", "W", f"F{d(1)}"] * (half - hr - 1)
    for i in range(n // 2 - pp + hr + 1):
        if i == 0 and middle:
            out += [f"F{d(0)}", f"B{d(1)}"]
        else:
            out += [f"F{d(0)}&B{d(1)}"]
        out += [f"F{d(1)}&B{d(0)}"]
    out += [f"B{d(1)}", f"F{d(1)}&B{d(0)}"] * (half - hr - 1)
    zb = False
    for i in range(hr + 1):
        if i == (hr + 1) // 2 and hr % 2 == 1:
            zb = True
        out.append(("b" if zb else "B") + str(d(1)))
        if i == (hr + 1) // 2 and hr % 2 == 0:
            zb = True
        out.append(("b" if zb else "B") + str(d(0)))
    for _ in range(half - hr - 1):
        out += ["W", f"b{d(0)}"]
    out += ["W"] * (hr + 1)
    return out


def _token(label: str, n: int) -> str:
    parts = []
    for chunk in label.split("&"):
        kind = chunk[0] if not chunk.startswith("BW") else "BW"
        mb = int(chunk[len(kind) :].split("@")[0])
        direction = 0 if mb < n // 2 else 1
        parts.append({"F": f"F{direction}", "BW": f"B{direction}", "B": f"b{direction}", "W": "W"}[kind])
    return "&".join(parts)


def test_dualpipe_8_ranks_20_microbatches_simulated_order_matches_repository() -> None:
    pp, n = 8, 20
    layout = get_schedule("dualpipe").build(pp, n)
    result = simulate_step(layout, UniformCost(1.0, 1.0, 0.5))
    for rank in range(pp):
        simulated = [_token(label, n) for label in result.order_of(rank)]
        assert simulated == _expected_dualpipe_rank(rank, pp, n), f"rank {rank}"
    # every micro-batch is forwarded and backwarded once on each of its stages
    for rank in range(pp):
        labels = " ".join(result.order_of(rank))
        assert labels.count("F") == n


@pytest.mark.parametrize("pp,n", [(4, 8), (8, 20), (16, 48)])
@pytest.mark.parametrize("f,b,w", [(1.0, 1.0, 1.0), (1.0, 2.0, 1.0), (1.3, 1.7, 0.9)])
def test_free_comm_bubble_equals_closed_form_1f1b_and_zb1p(
    pp: int, n: int, f: float, b: float, w: float
) -> None:
    for name in ("1f1b", "zb1p"):
        sched = get_schedule(name)
        result = simulate_step(sched.build(pp, n), UniformCost(f, b, w))
        bubble = result.step_time_s - n * (f + b + w)
        assert bubble == pytest.approx(sched.closed_form_bubble_s(pp, f, b + w, w, f + b + w), abs=1e-9)


@pytest.mark.parametrize("pp,n", [(4, 8), (8, 20), (16, 120)])
@pytest.mark.parametrize("w", [1.0, 0.5, 0.2])
def test_free_comm_bubble_equals_closed_form_dualpipe(pp: int, n: int, w: float) -> None:
    """V3-TR Table 2: (PP/2-1)(F&B+B-3W), exact when F equals the backward-for-inputs time."""
    f = b = 1.0
    sched = get_schedule("dualpipe")
    result = simulate_step(sched.build(pp, n), UniformCost(f, b, w))
    bubble = result.step_time_s - n * (f + b + w)
    assert bubble == pytest.approx(sched.closed_form_bubble_s(pp, f, b + w, w, f + b + w), abs=1e-9)


def test_link_contention_and_sends_lengthen_the_step_beyond_closed_form() -> None:
    pp, n = 8, 20
    sched = get_schedule("1f1b")
    free = simulate_step(sched.build(pp, n), UniformCost(1.0, 1.0, 1.0)).step_time_s
    closed = n * 3.0 + sched.closed_form_bubble_s(pp, 1.0, 2.0, 1.0, 3.0)
    assert free == pytest.approx(closed)
    sends = simulate_step(sched.build(pp, n), UniformCost(1.0, 1.0, 1.0, send_s=0.2)).step_time_s
    both = simulate_step(sched.build(pp, n), UniformCost(1.0, 1.0, 1.0, send_s=0.2, a2a_s=0.5)).step_time_s
    assert closed < sends < both


def test_routing_skew_slows_the_step() -> None:
    from sim.training.estimate import estimate_training

    kw = dict(
        model="deepseek-v2-lite",
        gpu="H800",
        num_gpus=64,
        tp=1,
        pp=4,
        ep=8,
        seq_len=2048,
        global_batch_seqs=256,
        tokens=1e9,
        precision="bf16",
        schedule="1f1b",
    )
    even = estimate_training(**kw)
    skewed = estimate_training(**kw, routing_skew=1.2, seed=1)
    assert skewed.step_time_s > even.step_time_s


def test_free_comm_leaves_no_exposed_communication() -> None:
    from sim.training.estimate import estimate_training

    t = estimate_training(
        model="deepseek-v2-lite",
        gpu="H800",
        num_gpus=64,
        tp=1,
        pp=4,
        ep=8,
        seq_len=2048,
        global_batch_seqs=256,
        tokens=1e9,
        precision="bf16",
        schedule="dualpipe",
        free_comm=True,
    )
    assert not any(k.startswith("exposed_") and v > 0 for k, v in t.breakdown_s.items())
    assert sum(t.breakdown_s.values()) == pytest.approx(t.step_time_s)


def test_every_schedule_runs_without_deadlock_and_counts_all_work() -> None:
    for name in schedule_names():
        sched = get_schedule(name)
        v = 2 if name == "interleaved-1f1b" else 1
        layout = sched.build(4, 8, v)
        result = simulate_step(layout, UniformCost(1.0, 1.0, 0.5))
        crit = result.timelines[result.critical_rank]
        assert sum(breakdown(crit).values()) == pytest.approx(result.step_time_s)


@pytest.mark.parametrize("pp,n,v", [(4, 8, 2), (8, 16, 2), (8, 24, 4)])
def test_free_comm_bubble_equals_closed_form_interleaved(pp: int, n: int, v: int) -> None:
    f, b, w = 1.0, 2.0, 0.5  # per virtual chunk
    sched = get_schedule("interleaved-1f1b")
    result = simulate_step(sched.build(pp, n, v), UniformCost(f, b, w))
    bubble = result.step_time_s - n * v * (f + b + w)
    assert bubble == pytest.approx(sched.closed_form_bubble_s(pp, f, b + w, w, f + b + w), abs=1e-9)


@pytest.mark.parametrize("pp,n", [(4, 8), (8, 16)])
def test_free_comm_bubble_equals_closed_form_dualpipev(pp: int, n: int) -> None:
    sched = get_schedule("dualpipev")
    result = simulate_step(sched.build(pp, n), UniformCost(1.0, 1.0, 1.0))
    bubble = result.step_time_s - 2 * n * 3.0  # two pieces per rank
    assert bubble == pytest.approx(sched.closed_form_bubble_s(pp, 1.0, 2.0, 1.0, 3.0), abs=1e-9)


def test_schedule_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown schedule 'pipedream'; known schedules: 1f1b"):
        get_schedule("pipedream")
    with pytest.raises(ValueError, match="even pp"):
        get_schedule("dualpipe").build(5, 20)
    with pytest.raises(ValueError, match="at least 2\\*pp"):
        get_schedule("dualpipe").build(8, 10)
    with pytest.raises(ValueError, match="multiple of pp"):
        get_schedule("interleaved-1f1b").build(4, 6, 2)


def test_dualpipe_memory_and_parameter_copies_match_table_2() -> None:
    """V3-TR Table 2: DualPipe keeps 2x parameters and PP+1 micro-batches of activations (peak)."""
    pp = 8
    layout = get_schedule("dualpipe").build(pp, 20)
    assert layout.parameter_copies == 2
    assert all(len(layout.pieces_on_rank(r)) == 2 for r in range(pp))
    assert max(layout.max_inflight_microbatches(r) for r in range(pp)) == pp + 1
    one = get_schedule("1f1b").build(pp, 20)
    assert max(one.max_inflight_microbatches(r) for r in range(pp)) == pp


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(deadline=None, max_examples=15)
@given(
    pp=st.integers(1, 8),
    extra=st.integers(0, 12),
    f=st.floats(0.1, 3.0),
    b=st.floats(0.1, 3.0),
    w=st.floats(0.1, 3.0),
)
def test_property_1f1b_bubble_and_zb1p_never_worse(pp: int, extra: int, f: float, b: float, w: float) -> None:
    n = pp + extra
    one = simulate_step(get_schedule("1f1b").build(pp, n), UniformCost(f, b, w)).step_time_s
    assert one - n * (f + b + w) == pytest.approx((pp - 1) * (f + b + w), rel=1e-9, abs=1e-9)
    zb = simulate_step(get_schedule("zb1p").build(pp, n), UniformCost(f, b, w)).step_time_s
    assert zb <= one + 1e-9
