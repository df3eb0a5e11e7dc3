"""KV-cache capacity of a serving instance, in tokens, managed in fixed-size pages.

The cache is paged (FlashMLA and vLLM use 64-token blocks; DeepSeek open-infra-index, FlashMLA
README), so a request holding ``n`` tokens occupies ``ceil(n / page_tokens)`` pages. The serving
engine reserves a request's whole footprint (prompt + all output tokens) when it admits it to the
decode batch and releases it at completion, so admitted requests are never preempted; requests
that do not fit wait in the queue.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class KVCacheManager:
    """Pages of KV cache of one instance (all its attention data-parallel ranks together)."""

    capacity_tokens: int
    page_tokens: int = 64

    def __post_init__(self) -> None:
        if self.page_tokens < 1:
            raise ValueError(f"page_tokens must be >= 1, got {self.page_tokens}.")
        if self.capacity_tokens < self.page_tokens:
            raise ValueError(
                f"The KV cache holds {self.capacity_tokens} tokens, "
                f"less than one page of {self.page_tokens}: "
                "the instance has no memory left for the KV cache after its weights."
            )
        self.capacity_pages = self.capacity_tokens // self.page_tokens
        self.used_pages = 0
        self.peak_pages = 0

    def pages_for(self, tokens: int) -> int:
        return -(-int(tokens) // self.page_tokens)

    def fits(self, tokens: int) -> bool:
        return self.used_pages + self.pages_for(tokens) <= self.capacity_pages

    def could_ever_fit(self, tokens: int) -> bool:
        return self.pages_for(tokens) <= self.capacity_pages

    def reserve(self, tokens: int) -> bool:
        """Reserve room for ``tokens``; False (and nothing reserved) when it does not fit."""
        pages = self.pages_for(tokens)
        if self.used_pages + pages > self.capacity_pages:
            return False
        self.used_pages += pages
        self.peak_pages = max(self.peak_pages, self.used_pages)
        return True

    def release(self, tokens: int) -> None:
        pages = self.pages_for(tokens)
        if pages > self.used_pages:
            raise RuntimeError(f"Releasing {pages} KV pages but only {self.used_pages} are in use.")
        self.used_pages -= pages

    @property
    def used_tokens(self) -> int:
        return self.used_pages * self.page_tokens

    @property
    def utilisation(self) -> float:
        return self.used_pages / self.capacity_pages
