"""Serving policies as strategies behind one interface each, chosen by deployment keys.

The serving engine (:mod:`sim.serving.engine`) holds the mechanics (queues, the KV cache, the decode
batch, step times) and asks a policy each time it must decide something:

* ``router`` -- which instance of a role takes a request (a prefill instance for a new request, a
  decode instance for a prefilled one, a colocated instance for a new one);
* ``prefill_batching`` -- which queued requests a prefill instance runs in its next batch;
* ``decode_admission`` -- which waiting requests join the decode batch (and reserve their KV cache);
* ``chunked_prefill`` -- how a colocated iteration splits its token budget over the prompts it is
  prefilling.

Each is an instance key of the deployment (DESIGN.md, :mod:`sim.serving.deployment`), so a
disaggregated deployment may route prefill and decode differently. The defaults reproduce the
engine's behaviour before the policies were factored out (the golden figures depend on it):
``least_loaded``, ``fifo_token_budget``, ``fifo_reserve`` and ``fifo_chunks``. Names are looked up in
the registries below (:func:`router`, :func:`prefill_batching`, :func:`decode_admission`,
:func:`chunked_prefill`); an unknown name is a ValueError listing the known ones, as the training
schedules are chosen (:func:`sim.training.schedules.get_schedule`).

"No limit" on a request count is :data:`NO_LIMIT` (infinity), never a large sentinel number.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "NO_LIMIT",
    "request_cap",
    "Loaded",
    "Router",
    "LeastLoaded",
    "RoundRobin",
    "PrefillBatching",
    "DecodeAdmission",
    "KVReserver",
    "ChunkedPrefill",
    "Chunk",
    "ROUTERS",
    "PREFILL_BATCHING",
    "DECODE_ADMISSION",
    "CHUNKED_PREFILL",
    "POLICY_KEYS",
    "DEFAULT_POLICIES",
    "router",
    "prefill_batching",
    "decode_admission",
    "chunked_prefill",
    "check_policy",
]

NO_LIMIT = math.inf  # a request cap that never binds


def request_cap(max_per_gpu: int | None, ranks: int) -> float:
    """Requests an instance may hold at once: ``max_per_gpu`` per attention data-parallel rank, or
    :data:`NO_LIMIT` when the deployment sets no cap (``max_batch_per_gpu`` absent)."""
    return NO_LIMIT if max_per_gpu is None else float(max_per_gpu * ranks)


# ---- router ------------------------------------------------------------------------------------------


class Loaded(Protocol):
    """An instance a router can choose: ``load`` is what the role balances (queued prefill tokens for
    a prefill instance, requests held for a decode or colocated one)."""

    @property
    def load(self) -> int: ...


L = TypeVar("L", bound=Loaded)


class Router(Protocol):
    def choose(self, instances: Sequence[L]) -> L:
        """The instance that takes the next request (``instances`` is never empty)."""
        ...


class LeastLoaded:
    """The instance with the least load now; ties go to the lowest index (Day 6: prefill requests go
    to the instance with the fewest queued tokens, decode requests to the one holding the fewest)."""

    def choose(self, instances: Sequence[L]) -> L:
        return min(instances, key=_LOAD)


_LOAD = operator.attrgetter("load")


class RoundRobin:
    """Instances in turn, whatever their load (a load balancer that does not look)."""

    def __init__(self) -> None:
        self.next_index = 0

    def choose(self, instances: Sequence[L]) -> L:
        chosen = instances[self.next_index % len(instances)]
        self.next_index += 1
        return chosen


# ---- prefill batching --------------------------------------------------------------------------------


class PrefillBatching(Protocol):
    def __call__(
        self, queue: deque[int], new_tokens: Callable[[int], int], budget_tokens: int, max_requests: float
    ) -> tuple[list[int], int]:
        """Take the next batch's requests off ``queue`` (request ids, oldest first); returns them and the
        tokens they compute (``new_tokens(rid)``: prompt less cached prefix). ``budget_tokens`` is the
        instance's tokens per batch, ``max_requests`` its request cap. Never empty for a non-empty queue."""
        ...


def fifo_token_budget(
    queue: deque[int], new_tokens: Callable[[int], int], budget_tokens: int, max_requests: float
) -> tuple[list[int], int]:
    """Requests in arrival order while their computed tokens fit the budget and the request cap allows;
    the first always goes, however long (DeepSeek's profile data: 16K tokens per GPU per batch)."""
    batch: list[int] = []
    computed = 0
    while queue:
        n_new = new_tokens(queue[0])
        if batch and (computed + n_new > budget_tokens or len(batch) >= max_requests):
            break
        batch.append(queue.popleft())
        computed += n_new
    return batch, computed


def one_request(
    queue: deque[int], new_tokens: Callable[[int], int], budget_tokens: int, max_requests: float
) -> tuple[list[int], int]:
    """One request per batch (no batching of prompts)."""
    rid = queue.popleft()
    return [rid], new_tokens(rid)


# ---- decode admission --------------------------------------------------------------------------------


class KVReserver(Protocol):
    def reserve(self, tokens: int) -> bool:
        """Reserve room for ``tokens`` KV entries; False (and nothing reserved) when they do not fit."""
        ...


class DecodeAdmission(Protocol):
    def __call__(
        self, waiting: deque[int], room: float, kv: KVReserver, footprint_tokens: np.ndarray
    ) -> tuple[list[int], bool]:
        """Take the requests that join the decode batch off ``waiting`` (oldest first), at most ``room``
        of them, reserving each one's whole KV footprint (``footprint_tokens[rid]``: prompt and every
        output token) in ``kv``. Returns them in admission order, and True when a waiting request was
        held back by the KV cache."""
        ...


def fifo_reserve(
    waiting: deque[int], room: float, kv: KVReserver, footprint_tokens: np.ndarray
) -> tuple[list[int], bool]:
    """In arrival order; the first request whose footprint does not fit blocks those behind it
    (head-of-line), so admission order is arrival order (SGLang's and vLLM's FCFS scheduling)."""
    admitted: list[int] = []
    while waiting and room > 0:
        rid = waiting[0]
        if not kv.reserve(int(footprint_tokens[rid])):
            return admitted, True
        admitted.append(waiting.popleft())
        room -= 1
    return admitted, False


def first_fit(
    waiting: deque[int], room: float, kv: KVReserver, footprint_tokens: np.ndarray
) -> tuple[list[int], bool]:
    """In arrival order, but a request that does not fit is skipped, not waited for: later, smaller
    requests may overtake it (more KV use, unfair to long requests)."""
    admitted: list[int] = []
    kept: list[int] = []
    while waiting and room > 0:
        rid = waiting.popleft()
        if kv.reserve(int(footprint_tokens[rid])):
            admitted.append(rid)
            room -= 1
        else:
            kept.append(rid)
    waiting.extendleft(reversed(kept))
    return admitted, bool(kept)


# ---- chunked prefill ---------------------------------------------------------------------------------


class Chunk(NamedTuple):
    """A prompt's share of one colocated iteration: ``tokens`` computed now, ``done_before`` of its
    prompt already in the KV cache (cached prefix included), ``completes`` when it is the last chunk
    (a named tuple: one is made per prompt per iteration)."""

    rid: int
    tokens: int
    done_before: int
    completes: bool


class ChunkedPrefill(Protocol):
    def __call__(
        self, prefilling: Sequence[list[int]], input_len: Callable[[int], int], budget_tokens: int
    ) -> list[Chunk]:
        """The chunks of the next iteration, from ``prefilling`` (``[rid, tokens still to compute]``,
        oldest first) and the iteration's token budget."""
        ...


def fifo_chunks(
    prefilling: Sequence[list[int]], input_len: Callable[[int], int], budget_tokens: int
) -> list[Chunk]:
    """Prompts in admission order, each taking what is left of the budget (the last one cut to fit):
    SGLang's and vLLM's chunked prefill."""
    chunks: list[Chunk] = []
    budget = budget_tokens
    for rid, left in prefilling:
        if budget <= 0:
            break
        take = min(left, budget)
        chunks.append(Chunk(rid, take, input_len(rid) - left, take == left))
        budget -= take
    return chunks


def whole_prompts(
    prefilling: Sequence[list[int]], input_len: Callable[[int], int], budget_tokens: int
) -> list[Chunk]:
    """No chunking: whole prompts in admission order while they fit the budget, the first however long
    (prefill and decode still share the iteration)."""
    chunks: list[Chunk] = []
    used = 0
    for rid, left in prefilling:
        if chunks and used + left > budget_tokens:
            break
        chunks.append(Chunk(rid, left, input_len(rid) - left, True))
        used += left
    return chunks


# ---- registries --------------------------------------------------------------------------------------

ROUTERS: dict[str, Callable[[], Router]] = {"least_loaded": LeastLoaded, "round_robin": RoundRobin}
PREFILL_BATCHING: dict[str, PrefillBatching] = {
    "fifo_token_budget": fifo_token_budget,
    "one_request": one_request,
}
DECODE_ADMISSION: dict[str, DecodeAdmission] = {"fifo_reserve": fifo_reserve, "first_fit": first_fit}
CHUNKED_PREFILL: dict[str, ChunkedPrefill] = {"fifo_chunks": fifo_chunks, "whole_prompts": whole_prompts}

# deployment instance key -> the names it may take
POLICY_KEYS: dict[str, tuple[str, ...]] = {
    "router": tuple(ROUTERS),
    "prefill_batching": tuple(PREFILL_BATCHING),
    "decode_admission": tuple(DECODE_ADMISSION),
    "chunked_prefill": tuple(CHUNKED_PREFILL),
}
DEFAULT_POLICIES: dict[str, str] = {
    "router": "least_loaded",
    "prefill_batching": "fifo_token_budget",
    "decode_admission": "fifo_reserve",
    "chunked_prefill": "fifo_chunks",
}


def check_policy(key: str, name: object, where: str = "") -> str:
    """``name`` as a registered policy of deployment key ``key`` (case-insensitive, '-' as '_');
    ValueError naming the allowed ones otherwise."""
    allowed = POLICY_KEYS.get(key)
    if allowed is None:
        raise ValueError(f"{key!r} is not a serving policy key; the keys are {sorted(POLICY_KEYS)}.")
    normal = str(name).strip().lower().replace("-", "_") if isinstance(name, str) else None
    if normal not in allowed:
        label = f"{where}.{key}" if where else key
        raise ValueError(f"{label} {name!r} is not a known policy; allowed: {', '.join(allowed)}.")
    return normal


def router(name: str) -> Router:
    """A fresh router of the named kind (routers may keep state, such as round-robin's turn)."""
    return ROUTERS[check_policy("router", name)]()


def prefill_batching(name: str) -> PrefillBatching:
    return PREFILL_BATCHING[check_policy("prefill_batching", name)]


def decode_admission(name: str) -> DecodeAdmission:
    return DECODE_ADMISSION[check_policy("decode_admission", name)]


def chunked_prefill(name: str) -> ChunkedPrefill:
    return CHUNKED_PREFILL[check_policy("chunked_prefill", name)]
