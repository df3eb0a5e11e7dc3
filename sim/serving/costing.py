"""The step-cost interface the serving engine runs on, and a constant stub that drives it.

:class:`sim.serving.stepcost.StepCostModel` (operator times of the real model on the real GPU) is
what :func:`sim.serving.api.simulate` uses; anything with the methods of :class:`StepCostSource`
can take its place (``Simulation(..., step_costs=...)``), so the engine's mechanics and policies
can be tested against a cost whose every step time is known in advance (``tests/sim/serving/
test_serving_engine.py``), or driven by measured step times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sim.serving.stepcost import StepCost

__all__ = ["StepCostSource", "ConstantStepCost"]


class StepCostSource(Protocol):
    """What one instance's steps cost (seconds, on the busiest GPU of the instance)."""

    @property
    def num_layers(self) -> int:
        """Layers whose attention :meth:`prefill_attention` times once each (the engine scales the
        per-layer attention of cached prefixes by it to attribute prefill time to cache hits)."""
        ...

    def prefill_attention(self, new_tokens: int, cached_tokens: int) -> float:
        """Core-attention seconds of one layer for a prompt of ``new_tokens`` after ``cached_tokens``."""
        ...

    def prefill_step(self, tokens_per_gpu: int, attention_s: float) -> StepCost:
        """A prefill batch of ``tokens_per_gpu`` computed tokens with per-layer attention ``attention_s``."""
        ...

    def decode_step(self, batch_per_gpu: int, kv_len: int) -> StepCost:
        """A decode iteration of ``batch_per_gpu`` requests at KV length ``kv_len`` per request."""
        ...

    def mixed_step(
        self, decode_batch: int, kv_len: int, prefill_tokens: int, prefill_attention_s: float
    ) -> StepCost:
        """A colocated iteration: decode requests plus a prefill chunk."""
        ...

    def kv_transfer_time(self, bytes_per_gpu: float) -> float:
        """Seconds to move a prefill batch's KV cache (bytes per GPU) to the decode instance."""
        ...


@dataclass(frozen=True)
class ConstantStepCost:
    """Every step costs ``step_s`` seconds, whatever its batch; a KV transfer ``kv_transfer_s``;
    attention nothing (so no prefill time is attributed to cache hits)."""

    step_s: float
    kv_transfer_s: float = 0.0
    num_layers: int = 1

    def __post_init__(self) -> None:
        if not self.step_s > 0:
            raise ValueError(f"step_s must be a positive number of seconds, got {self.step_s!r}.")
        if not self.kv_transfer_s >= 0:
            raise ValueError(f"kv_transfer_s must be >= 0 seconds, got {self.kv_transfer_s!r}.")

    def _step(self) -> StepCost:
        return StepCost(self.step_s, self.step_s, 0.0, 0.0, {"constant": self.step_s}, "compute")

    def prefill_attention(self, new_tokens: int, cached_tokens: int) -> float:
        return 0.0

    def prefill_step(self, tokens_per_gpu: int, attention_s: float) -> StepCost:
        return self._step()

    def decode_step(self, batch_per_gpu: int, kv_len: int) -> StepCost:
        return self._step()

    def mixed_step(
        self, decode_batch: int, kv_len: int, prefill_tokens: int, prefill_attention_s: float
    ) -> StepCost:
        return self._step()

    def kv_transfer_time(self, bytes_per_gpu: float) -> float:
        return self.kv_transfer_s
