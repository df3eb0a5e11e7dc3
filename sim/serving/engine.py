"""The SimPy serving simulation: arrivals, prefill batches, KV transfer, decode steps, completions.

Events are batch steps and request arrivals/completions, never one event per token per request:
a decode instance advances all its requests by one step per event; each request's finishing
step is known when it joins the batch (its remaining tokens / expected tokens per step), and a
heap pops it when that step is reached. The KV length of the batch is tracked as running sums,
per attention-DP rank too (requests are placed on ranks by the decode load balancer of Day 6,
fewest KV tokens first; core attention waits for the busiest rank, ``DecodeBatch``), so a step
costs O(requests finishing + ranks) plus one cached step-time look-up.

Flows:

* disaggregated: arrival -> least-loaded prefill instance (FIFO queue; batches of up to
  ``max_tokens_per_gpu`` computed tokens per GPU) -> first token -> KV transfer over RDMA ->
  least-loaded decode instance (FIFO queue; admitted while its KV cache has room for the whole
  request and the batch cap allows) -> decode steps -> completion.
* colocated: one queue per instance; each iteration runs every admitted decode request for one
  step plus a chunk of pending prefill (chunked prefill, up to ``max_tokens_per_gpu`` tokens per
  GPU), as vLLM and SGLang do.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sim.serving import policies
from sim.serving.costing import StepCostSource
from sim.serving.deployment import Deployment, InstanceSpec, kv_bytes_per_token, memory_plan
from sim.serving.kvcache import KVCacheManager
from sim.serving.metrics import Recorder, RequestLog
from sim.serving.stepcost import StepCost, StepCostModel
from sim.serving.workloads import Workload, draw_requests

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel

KV_BUCKET_TOKENS = 64  # decode step times are looked up at a KV length rounded to a KV page


class Simulation:
    """One run. Build it, call :meth:`run`, read the counters and the request log."""

    def __init__(
        self,
        model: MoEModel,
        gpu: GPUProfile,
        deployment: Deployment,
        workload: Workload,
        duration_s: float,
        warmup_s: float,
        rng: np.random.Generator,
        stop_after_completions: int | None = None,
        run_past_window: bool = True,
        step_costs: Callable[[InstanceSpec], StepCostSource] | None = None,
        trace_steps: bool = False,
    ) -> None:
        """``step_costs`` makes each role's step cost (default: :class:`StepCostModel` of the model on the
        GPU; a stub such as :class:`sim.serving.costing.ConstantStepCost` drives the engine alone);
        ``trace_steps`` keeps every step in ``recorder.steps``."""
        self.model = model
        self.gpu = gpu
        self.dep = deployment
        self.wl = workload
        self.rng = rng
        self.env = simpy.Environment()
        # A finite benchmark (``workload.requests``) is measured from t = 0 to its last completion,
        # as benchmark tools measure it (tokens / makespan): the window closes when the run ends.
        if workload.finite:
            warmup_s, duration_s = 0.0, math.inf
            stop_after_completions = workload.requests
        self.start_s = warmup_s
        self.end_s = warmup_s + duration_s
        self.window = (self.start_s, self.end_s)
        self.log = RequestLog(capacity=max(1024, (workload.concurrency or 0) * 4, workload.requests or 0))
        self.issued = 0  # requests created so far (a finite workload creates ``workload.requests``)
        self.completed_in_window = 0
        self.completed = 0
        self.stop_after = stop_after_completions
        self.stop_event = self.env.event()
        # past the window's end (``run_past_window``) the steps under way finish and record their
        # share of the window, and the requests that arrived inside it are followed to completion
        # (their latency is the window's), for at most another window length; throughput, busy
        # time and cost count the window only
        self.run_past_window = run_past_window
        self.drain_limit_s = self.end_s + duration_s
        self.step_end_s = 0.0  # when the last step started so far ends
        self.window_arrivals = 0
        self.window_open = 0  # requests that arrived inside the window and have not finished
        self.drained = self.env.event()
        self.events = 0
        self.r = workload.tokens_per_decode_step
        roles = tuple(spec.role for spec in deployment.instances)
        self.recorder = Recorder(self.start_s, self.end_s, roles, trace=trace_steps)
        self.stats = self.recorder.stats
        self.input_tokens = self.recorder.input_tokens
        self.cached_input_tokens = self.recorder.cached_input_tokens
        self.output_tokens = self.recorder.output_tokens
        self._draw_buffer: list[tuple[int, int, int]] = []
        self.prefill: list[PrefillInstance] = []
        self.decode: list[DecodeInstance] = []
        self.colocated: list[ColocatedInstance] = []
        draft = workload.mtp_draft_tokens

        def real_costs(spec: InstanceSpec) -> StepCostSource:
            return StepCostModel(model, gpu, spec, draft, rng)

        costs = real_costs if step_costs is None else step_costs
        if deployment.mode == "disaggregated":
            assert deployment.prefill is not None and deployment.decode is not None
            pcost = costs(deployment.prefill)
            dcost = costs(deployment.decode)
            self.prefill_router = policies.router(deployment.prefill.router)
            self.decode_router = policies.router(deployment.decode.router)
            # decode processes first: at equal times they step before prefill hands them requests
            self.decode = [
                DecodeInstance(self, deployment.decode, dcost, i) for i in range(deployment.decode.instances)
            ]
            self.prefill = [
                PrefillInstance(self, deployment.prefill, pcost, i)
                for i in range(deployment.prefill.instances)
            ]
        else:
            assert deployment.colocated is not None
            ccost = costs(deployment.colocated)
            self.colocated_router = policies.router(deployment.colocated.router)
            self.colocated = [
                ColocatedInstance(self, deployment.colocated, ccost, i)
                for i in range(deployment.colocated.instances)
            ]
        self.max_request_tokens = min(i.kv.capacity_tokens for i in self.decode + self.colocated)  # type: ignore

    # ---- requests -----------------------------------------------------------------------------
    def _next_lengths(self) -> tuple[int, int, int]:
        if not self._draw_buffer:
            d = draw_requests(self.wl, self.rng, 4096)
            self._draw_buffer = list(
                zip(d.input_len.tolist(), d.output_len.tolist(), d.cached_tokens.tolist(), strict=True)
            )
            self._draw_buffer.reverse()
        return self._draw_buffer.pop()

    def new_request(self, lengths: tuple[int, int, int] | None = None) -> None:
        n_in, n_out, cached = lengths if lengths is not None else self._next_lengths()
        total = n_in + n_out
        if total > self.max_request_tokens:
            raise ValueError(
                f"A request of {n_in} + {n_out} tokens needs more KV cache than one instance holds "
                f"({self.max_request_tokens} tokens); shorten the lengths or use larger instances."
            )
        rid = self.log.new(self.env.now, n_in, n_out, cached)
        self.issued += 1
        self.events += 1
        if self.start_s <= self.env.now <= self.end_s:
            self.window_arrivals += 1
            self.window_open += 1
        if self.prefill:
            self.prefill_router.choose(self.prefill).submit(rid)
        else:
            self.colocated_router.choose(self.colocated).submit(rid)

    def to_decode(self, rids: list[int]) -> None:
        choose, instances = self.decode_router.choose, self.decode
        for rid in rids:
            choose(instances).submit(rid)

    def finished(self, rid: int) -> None:
        now = self.env.now
        self.log.mark("finish_s", rid, now)
        self.events += 1
        if self.start_s <= now <= self.end_s:
            self.completed_in_window += 1
        if self.start_s <= self.log.times["arrival_s"][rid] <= self.end_s:
            self.window_open -= 1
            if self.window_open == 0 and now >= self.end_s and not self.drained.triggered:
                self.drained.succeed()
        self.completed += 1
        if (
            self.stop_after is not None
            and self.completed >= self.stop_after
            and not self.stop_event.triggered
        ):
            self.stop_event.succeed()
        if self.wl.kind == "closed" and self._may_issue():
            self.new_request()

    def _may_issue(self) -> bool:
        return self.wl.requests is None or self.issued < self.wl.requests

    # ---- sources --------------------------------------------------------------------------------
    def _open_loop(self) -> Any:
        rate = float(self.wl.arrival_rate_per_s or 0.0)
        while True:
            gaps = self.rng.exponential(1.0 / rate, 4096)
            for gap in gaps:
                yield self.env.timeout(float(gap))
                if not self._may_issue():
                    return
                self.new_request()

    def _trace(self) -> Any:
        assert self.wl.trace is not None
        n = len(self.wl.trace)
        cached = np.floor(
            self.wl.cache_hit_rate * np.array([r.input_len for r in self.wl.trace]) + self.rng.random(n)
        ).astype(int)
        for row, c in zip(self.wl.trace, cached, strict=True):
            delay = row.arrival_time_s - self.env.now
            if delay > 0:
                yield self.env.timeout(delay)
            self.new_request((row.input_len, row.output_len, min(int(c), row.input_len - 1)))

    def run(self) -> None:
        if self.wl.kind == "closed":
            for _ in range(int(self.wl.concurrency or 0)):
                if self._may_issue():
                    self.new_request()
        elif self.wl.kind == "open":
            self.env.process(self._open_loop())
        elif self.wl.kind == "offline":
            for _ in range(int(self.wl.requests or 0)):
                self.new_request()
        else:
            self.env.process(self._trace())
        if self.stop_after is not None:
            self.env.run(until=self.stop_event)
            if self.wl.finite:  # the window ends with the last completion (the makespan)
                self.end_s = self.env.now
                self.window = (self.start_s, self.end_s)
                self.recorder.end_s = self.end_s
            return
        self.env.run(until=self.end_s)
        if not self.run_past_window:
            return
        if self.step_end_s > self.env.now:  # steps under way at the window's end count their share
            # a timeout scheduled after theirs: it fires once they have ended and been recorded
            self.env.run(until=self.env.timeout(self.step_end_s - self.env.now))
        if self.window_open > 0 and self.env.now < self.drain_limit_s:
            limit = self.env.timeout(self.drain_limit_s - self.env.now)
            self.env.run(until=self.env.any_of([self.drained, limit]))

    def count_output(self, tokens: float, t0: float, t1: float) -> None:
        self.output_tokens.add(tokens, t0, t1)


class DecodeBatch:
    """Running decode requests with O(1) KV-length bookkeeping, placed on attention-DP ranks.

    A request that joins at step s0 with KV length len0 has length len0 + r (s - s0) at step s, so the
    batch's total KV length is S0 + r (n s - Sstart) with S0 = sum len0 and Sstart = sum s0; the
    same sums per rank give each rank's KV length.

    Placement is the decode load balancer of Day 6, which balances KV-cache usage (the
    core-attention load) across the data-parallel ranks: a joining request goes to the rank
    holding the fewest KV tokens now, among the ranks below ``rank_cap`` requests
    (``max_batch_per_gpu``); ties go to the lowest rank. Request counts follow from it. With
    lengths drawn from a wide distribution one long request keeps its rank heavy for its whole
    life, so the busiest rank holds more than the mean (:meth:`busiest_kv`).
    """

    def __init__(self, r: float, ranks: int = 1, rank_cap: int | None = None) -> None:
        self.r = r
        self.step = 0
        self.heap: list[tuple[int, int]] = []
        self.len0: dict[int, int] = {}
        self.start: dict[int, int] = {}
        self.sum_len0 = 0
        self.sum_start = 0
        self.ranks = max(1, int(ranks))
        self.rank_cap = rank_cap
        self.rank_of: dict[int, int] = {}
        self.rank_n = np.zeros(self.ranks, dtype=np.int64)
        self.rank_len0 = np.zeros(self.ranks, dtype=np.int64)
        self.rank_start = np.zeros(self.ranks, dtype=np.int64)

    @property
    def size(self) -> int:
        return len(self.len0)

    def rank_kv(self) -> np.ndarray:
        """KV tokens each rank holds now."""
        return self.rank_len0 + self.r * (self.rank_n * self.step - self.rank_start)

    def join(self, rid: int, kv_len: int, tokens_left: int) -> None:
        steps = int(math.ceil(tokens_left / self.r)) if tokens_left > 0 else 0
        heapq.heappush(self.heap, (self.step + steps, rid))
        self.len0[rid] = kv_len
        self.start[rid] = self.step
        self.sum_len0 += kv_len
        self.sum_start += self.step
        rank = 0
        if self.ranks > 1:
            load = self.rank_kv()
            if self.rank_cap is not None:
                load = np.where(self.rank_n < self.rank_cap, load, np.inf)
            rank = int(np.argmin(load))
        self.rank_of[rid] = rank
        self.rank_n[rank] += 1
        self.rank_len0[rank] += kv_len
        self.rank_start[rank] += self.step

    def total_kv(self) -> float:
        """KV tokens of the whole batch now."""
        return self.sum_len0 + self.r * (self.size * self.step - self.sum_start)

    def mean_kv(self) -> float:
        return self.total_kv() / self.size if self.size else 0.0

    def busiest_kv(self) -> float:
        """KV tokens on the rank that holds the most (the whole batch's with one rank)."""
        if not self.size:
            return 0.0
        if self.ranks == 1:
            return self.total_kv()
        return float(self.rank_kv().max())

    def step_shape(self) -> tuple[int, int, float]:
        """(requests per GPU, KV length per request, busiest/mean rank KV) for the step cost.

        Every stage of a decode layer ends in the all-to-all, so each waits for its slowest
        rank: core attention for the rank with the most KV tokens, which the step charges as
        the mean requests per GPU (``ceil(n / ranks)``: the expert and dispatch loads are the
        whole batch's) at the busiest rank's KV divided among them. Requests on the busiest rank
        beyond the mean are not charged their per-request projections: at decode batch sizes
        those GEMMs cost their weight reads, whatever the rows."""
        n = self.size
        if not n:
            return 0, 0, 1.0
        b_gpu = int(math.ceil(n / self.ranks))
        busiest = self.busiest_kv()
        mean = self.total_kv() / self.ranks
        kv = bucket_tokens(int(round(busiest / b_gpu)))
        return b_gpu, kv, (busiest / mean if mean > 0 else 1.0)

    def pop_done(self) -> list[tuple[int, int]]:
        """(rid, steps it ran) of requests whose last step has run."""
        out = []
        while self.heap and self.heap[0][0] <= self.step:
            _, rid = heapq.heappop(self.heap)
            s0 = self.start.pop(rid)
            len0 = self.len0.pop(rid)
            self.sum_start -= s0
            self.sum_len0 -= len0
            rank = self.rank_of.pop(rid)
            self.rank_n[rank] -= 1
            self.rank_len0[rank] -= len0
            self.rank_start[rank] -= s0
            out.append((rid, self.step - s0))
        return out


def bucket_tokens(tokens: int) -> int:
    """Round a token count up to a whole KV page (cache key for operator times)."""
    return max(KV_BUCKET_TOKENS, int(math.ceil(tokens / KV_BUCKET_TOKENS)) * KV_BUCKET_TOKENS)




class _Instance:
    """What every instance has: its spec, its step cost, a queue it is woken for, and its policies."""

    role = ""

    def __init__(self, sim: Simulation, spec: InstanceSpec, cost: StepCostSource, index: int) -> None:
        self.sim = sim
        self.spec = spec
        self.cost = cost
        self.index = index
        self.wake = sim.env.event()

    def _input_len(self, rid: int) -> int:
        return int(self.sim.log.input_len[rid])

    def _new_tokens(self, rid: int) -> int:
        """Prompt tokens a request computes (its cached prefix is not recomputed)."""
        log = self.sim.log
        return int(log.input_len[rid] - log.cached_tokens[rid])


class PrefillInstance(_Instance):
    """Prefill batches from a FIFO queue (``prefill_batching``), then the KV cache goes to decode."""

    role = "prefill"

    def __init__(self, sim: Simulation, spec: InstanceSpec, cost: StepCostSource, index: int) -> None:
        super().__init__(sim, spec, cost, index)
        self.queue: deque[int] = deque()
        self.load = 0  # prompt tokens queued here and not yet computed: what the router balances
        self.budget = spec.max_tokens_per_gpu * spec.attn_dp
        self.max_requests = policies.request_cap(spec.max_batch_per_gpu, spec.attn_dp)
        self.batching = policies.prefill_batching(spec.prefill_batching)
        self.kv_bytes_per_token = kv_bytes_per_token(sim.model, spec.kv_dtype)
        sim.env.process(self.run())

    def submit(self, rid: int) -> None:
        self.queue.append(rid)
        log = self.sim.log
        self.load += int(log.input_len[rid] - log.cached_tokens[rid])
        if not self.wake.triggered:
            self.wake.succeed()

    def run(self) -> Any:
        env = self.sim.env
        while True:
            if not self.queue:
                self.wake = env.event()
                yield self.wake
            batch, computed = self.batching(self.queue, self._new_tokens, self.budget, self.max_requests)
            self.load -= computed
            t0 = env.now
            step, hit_s_per_layer = self._cost_of(batch, computed, t0)
            self.sim.step_end_s = max(self.sim.step_end_s, t0 + step.time_s)
            yield env.timeout(step.time_s)
            t1 = env.now
            self.sim.events += 1
            layers = self.cost.num_layers
            hit_share = min(1.0, max(0.0, hit_s_per_layer * layers / step.time_s)) if step.time_s else 0.0
            self.sim.recorder.step(
                "prefill", self.index, step, t0, t1, len(batch), computed, hit_share=hit_share
            )
            self._hand_over(batch, t0, t1)

    def _cost_of(self, batch: list[int], computed: int, t0: float) -> tuple[StepCost, float]:
        """The batch's step cost and the per-GPU, per-layer attention time its cached prefixes add;
        marks each request's prefill start."""
        log = self.sim.log
        attn = 0.0
        attn_no_prefix = 0.0
        longest = 0
        for rid in batch:
            log.mark("prefill_start_s", rid, t0)
            c = int(log.cached_tokens[rid])
            n_new = int(log.input_len[rid]) - c
            nb = bucket_tokens(n_new)
            attn += self.cost.prefill_attention(nb, bucket_tokens(c) if c else 0)
            attn_no_prefix += self.cost.prefill_attention(nb, 0)
            longest = max(longest, n_new)
        dp = self.spec.attn_dp
        # the step waits for the busiest rank: an even share of the tokens, or the longest prompt
        tokens_per_gpu = max(int(math.ceil(computed / dp)), longest)
        attn_per_gpu = max(attn / dp, attn / len(batch))
        return self.cost.prefill_step(tokens_per_gpu, attn_per_gpu), (attn - attn_no_prefix) / dp

    def _hand_over(self, batch: list[int], t0: float, t1: float) -> None:
        """First tokens out; single-token requests finish, the others' KV cache goes to decode."""
        sim = self.sim
        log = sim.log
        in_tokens = 0
        cached_tokens = 0
        for rid in batch:
            in_tokens += int(log.input_len[rid])
            cached_tokens += int(log.cached_tokens[rid])
        sim.input_tokens.add(in_tokens, t0, t1)
        sim.cached_input_tokens.add(cached_tokens, t0, t1)
        sim.count_output(len(batch), t1, t1)
        to_decode = []
        kv_bytes = 0.0
        for rid in batch:
            log.mark("first_token_s", rid, t1)
            if log.output_len[rid] <= 1:
                sim.finished(rid)
            else:
                to_decode.append(rid)
                kv_bytes += float(log.input_len[rid]) * self.kv_bytes_per_token
        if to_decode:
            delay = self.cost.kv_transfer_time(kv_bytes / self.spec.attn_dp)
            sim.env.process(self._transfer(to_decode, delay))

    def _transfer(self, rids: list[int], delay: float) -> Any:
        if delay > 0:
            yield self.sim.env.timeout(delay)
        self.sim.to_decode(rids)


class _DecodingInstance(_Instance):
    """An instance with a KV cache and a decode batch: admission (``decode_admission``) reserves a
    request's whole footprint; requests finish off the batch when their last step has run."""

    def __init__(self, sim: Simulation, spec: InstanceSpec, cost: StepCostSource, index: int) -> None:
        super().__init__(sim, spec, cost, index)
        self.plan = memory_plan(sim.model, sim.gpu, spec, sim.wl.mtp_draft_tokens)
        self.kv = KVCacheManager(self.plan.kv_capacity_tokens)
        self.waiting: deque[int] = deque()
        self.batch = DecodeBatch(sim.r, spec.attn_dp, spec.max_batch_per_gpu)
        self.max_batch = policies.request_cap(spec.max_batch_per_gpu, spec.attn_dp)
        self.admission = policies.decode_admission(spec.decode_admission)

    def submit(self, rid: int) -> None:
        self.waiting.append(rid)
        if not self.wake.triggered:
            self.wake.succeed()

    def _admit(self, room: float) -> tuple[list[int], bool]:
        """The waiting requests the admission policy lets in (their KV footprints reserved), and whether
        one was held back by the KV cache."""
        return self.admission(self.waiting, room, self.kv, self.sim.log.footprint_tokens)

    def _finish(self, rid: int) -> None:
        log = self.sim.log
        self.kv.release(int(log.input_len[rid] + log.output_len[rid]))
        self.sim.finished(rid)

    def _decode_stepped(self, n: int, t0: float, t1: float) -> None:
        """The batch's ``n`` requests made one step: count their tokens (less what the last step of a
        finishing request drafted past its end) and finish those whose last step it was."""
        sim = self.sim
        log = sim.log
        r = sim.r
        self.batch.step += 1
        sim.count_output(n * r, t0, t1)
        kv = self.kv
        for rid, steps in self.batch.pop_done():
            n_out = int(log.output_len[rid])
            sim.count_output(-(steps * r - (n_out - 1)), t1, t1)
            kv.release(int(log.input_len[rid]) + n_out)
            sim.finished(rid)


class DecodeInstance(_DecodingInstance):
    """Decode steps over the admitted batch, requests admitted as they arrive and the cache allows."""

    role = "decode"

    def __init__(self, sim: Simulation, spec: InstanceSpec, cost: StepCostSource, index: int) -> None:
        super().__init__(sim, spec, cost, index)
        sim.env.process(self.run())

    @property
    def load(self) -> int:
        """Requests held (decoding or waiting): what the router balances."""
        return self.batch.size + len(self.waiting)

    def run(self) -> Any:
        env = self.sim.env
        while True:
            admitted, blocked = self._admit(self.max_batch - self.batch.size)
            if admitted:
                log = self.sim.log
                now = env.now
                for rid in admitted:
                    log.mark("decode_admit_s", rid, now)
                    self.batch.join(rid, int(log.input_len[rid]) + 1, int(log.output_len[rid]) - 1)
            n = self.batch.size
            if n == 0:
                self.wake = env.event()
                yield self.wake
                continue
            b_gpu, kv, imbalance = self.batch.step_shape()
            step = self.cost.decode_step(b_gpu, kv)
            t0 = env.now
            self.sim.step_end_s = max(self.sim.step_end_s, t0 + step.time_s)
            yield env.timeout(step.time_s)
            t1 = env.now
            self.sim.events += 1
            self.sim.recorder.step(
                "decode", self.index, step, t0, t1, n, kv_imbalance=imbalance, kv_blocked=blocked
            )
            self._decode_stepped(n, t0, t1)


class ColocatedInstance(_DecodingInstance):
    """Continuous batching with chunked prefill (``chunked_prefill``): each iteration steps every decoding
    request once and computes a chunk of the prompts being prefilled, as vLLM and SGLang do."""

    role = "colocated"

    def __init__(self, sim: Simulation, spec: InstanceSpec, cost: StepCostSource, index: int) -> None:
        super().__init__(sim, spec, cost, index)
        self.prefilling: deque[list[int]] = deque()  # [rid, tokens still to compute]
        self.budget = spec.max_tokens_per_gpu * spec.attn_dp
        self.chunking = policies.chunked_prefill(spec.chunked_prefill)
        sim.env.process(self.run())

    @property
    def load(self) -> int:
        """Requests held (decoding, prefilling or waiting): what the router balances."""
        return self.batch.size + len(self.waiting) + len(self.prefilling)

    def run(self) -> Any:
        env = self.sim.env
        dp = self.spec.attn_dp
        while True:
            room = self.max_batch - self.batch.size - len(self.prefilling)
            admitted, blocked = self._admit(room)
            for rid in admitted:
                self.sim.log.mark("prefill_start_s", rid, env.now)
                self.prefilling.append([rid, self._new_tokens(rid)])
            n = self.batch.size
            if n == 0 and not self.prefilling:
                self.wake = env.event()
                yield self.wake
                continue
            chunks = self.chunking(self.prefilling, self._input_len, self.budget)
            attn, attn_hit = self._chunk_attention(chunks)
            chunk_tokens = sum(c.tokens for c in chunks)
            b_gpu, kv, imbalance = self.batch.step_shape()
            attn_gpu = max(attn / dp, attn / len(chunks)) if chunks else 0.0
            step = self.cost.mixed_step(b_gpu, kv, int(math.ceil(chunk_tokens / dp)), attn_gpu)
            t0 = env.now
            self.sim.step_end_s = max(self.sim.step_end_s, t0 + step.time_s)
            yield env.timeout(step.time_s)
            t1 = env.now
            self.sim.events += 1
            decode_tokens = n * (1 + self.sim.wl.mtp_draft_tokens)
            both = chunk_tokens + decode_tokens
            share = chunk_tokens / both if both else 0.0
            # time the cached prefixes add (attention over them, per GPU, every layer), within the
            # iteration's prefill share
            hit = attn_hit * (attn_gpu / attn) * self.cost.num_layers / step.time_s if attn > 0 else 0.0
            self.sim.recorder.step(
                "colocated",
                self.index,
                step,
                t0,
                t1,
                n,
                chunk_tokens,
                kv_imbalance=imbalance if n else None,
                kv_blocked=blocked,
                hit_share=min(share, max(0.0, hit)),
                prefill_share=share,
            )
            if n:
                self._decode_stepped(n, t0, t1)
            self._prefilled(chunks, t1)

    def _chunk_attention(self, chunks: list[policies.Chunk]) -> tuple[float, float]:
        """Per-layer attention of the chunks, and the part of it that attends to cached prefixes (what a
        cache hit costs)."""
        log = self.sim.log
        attn = 0.0
        attn_hit = 0.0
        for c in chunks:
            tokens = bucket_tokens(c.tokens)
            a = self.cost.prefill_attention(tokens, bucket_tokens(c.done_before) if c.done_before else 0)
            attn += a
            cached = int(log.cached_tokens[c.rid])
            if cached:
                computed_before = c.done_before - cached
                attn_hit += a - self.cost.prefill_attention(
                    tokens, bucket_tokens(computed_before) if computed_before else 0
                )
        return attn, attn_hit

    def _prefilled(self, chunks: list[policies.Chunk], t1: float) -> None:
        """Chunks done: a prompt whose last chunk it was gives its first token and joins the batch."""
        sim = self.sim
        log = sim.log
        for c in chunks:
            head = self.prefilling[0]
            if not c.completes:
                head[1] -= c.tokens
                continue
            self.prefilling.popleft()
            rid = c.rid
            n_in = int(log.input_len[rid])
            sim.input_tokens.add(n_in, t1, t1)
            sim.cached_input_tokens.add(int(log.cached_tokens[rid]), t1, t1)
            log.mark("first_token_s", rid, t1)
            sim.count_output(1, t1, t1)
            if log.output_len[rid] <= 1:
                self._finish(rid)
            else:
                log.mark("decode_admit_s", rid, t1)
                self.batch.join(rid, n_in + 1, int(log.output_len[rid]) - 1)
