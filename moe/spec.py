"""The shape of a model as data: its attention and its layers, in Hugging Face field names.

:class:`ModelSpec` holds what a ``config.json`` says about a model (sizes, experts, routing,
attention); :mod:`moe.accounting` counts parameters, FLOPs, KV cache and memory from it, and
:class:`moe.config.MoEModel` (what ``moe.get`` returns) adds those counts as methods. Keeping the
fields here lets the accounting read a model without importing the class that calls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AttentionSpec", "ModelSpec"]


@dataclass(frozen=True)
class AttentionSpec:
    """Shape of one model's attention.

    ``kind``: "mha" (num_kv_heads == num_heads), "gqa" (fewer KV heads), "mla" (DeepSeek multi-head
    latent attention, V2/V3; with ``index_topk`` set it is V3.2's DeepSeek Sparse Attention), "csa"
    (DeepSeek-V4: one shared 512-d KV head, a sliding window of raw entries, and per-layer KV
    compression with ``compress_ratios``; ratio-4 layers select ``index_topk`` compressed entries
    with a lightning indexer, ratio-128 layers attend to all compressed entries, ratio 0 is
    window-only).

    ``layer_windows`` gives each main layer's sliding window in tokens (None = full attention).
    ``chunk_size`` and ``layer_chunked`` describe chunked local attention (Llama 4, HF
    ``attention_chunk_size``): in a chunked layer the sequence is cut into blocks of ``chunk_size``
    tokens and a query attends causally within its own block only.
    """

    kind: str
    num_heads: int
    num_kv_heads: int
    head_dim: int
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int | None = None
    layer_windows: tuple[int | None, ...] = ()
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    sinks: bool = False
    index_n_heads: int = 0
    index_head_dim: int = 0
    index_topk: int = 0
    o_groups: int = 0
    o_lora_rank: int = 0
    compress_ratios: tuple[int, ...] = ()
    mtp_compress_ratio: int = 0
    chunk_size: int | None = None
    layer_chunked: tuple[bool, ...] = ()

    @property
    def qk_head_dim(self) -> int:
        """Query/key width per head used by the score product (MLA: nope + rope)."""
        if self.kind == "mla":
            return self.qk_nope_head_dim + self.qk_rope_head_dim
        return self.head_dim

    @property
    def value_head_dim(self) -> int:
        """Value width per head."""
        if self.kind == "mla":
            return self.v_head_dim
        return self.head_dim

    def window(self, layer: int) -> int | None:
        """Sliding window of layer ``layer`` in tokens, or None for full attention.

        Indices past the main layers denote MTP modules' layers: V4's use the sliding window, the
        others attend like the last main layer.
        """
        if layer >= len(self.layer_windows):
            if self.kind == "csa" or not self.layer_windows:
                return self.sliding_window
            return self.layer_windows[-1]
        return self.layer_windows[layer]

    def chunk(self, layer: int) -> int | None:
        """Attention chunk of layer ``layer`` in tokens (chunked local attention), or None.

        Layers past the main ones (MTP) attend like the last main layer.
        """
        if self.chunk_size is None or not self.layer_chunked:
            return None
        index = min(layer, len(self.layer_chunked) - 1)
        return self.chunk_size if self.layer_chunked[index] else None

    def compress_ratio(self, layer: int) -> int:
        """KV compression ratio of layer ``layer`` (0: none; MTP layers past the main ones use
        ``mtp_compress_ratio``). Only "csa" models compress."""
        if self.kind != "csa":
            return 0
        if layer >= len(self.compress_ratios):
            return self.mtp_compress_ratio
        return self.compress_ratios[layer]

    def has_indexer(self, layer: int) -> bool:
        """Whether ``layer`` runs a lightning indexer (V3.2 DSA: every layer; V4: ratio-4 layers)."""
        if self.kind == "mla":
            return self.index_topk > 0
        if self.kind == "csa":
            return self.compress_ratio(layer) == 4
        return False

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}



@dataclass(frozen=True)
class ModelSpec:
    """A Mixture-of-Experts (or dense) decoder's configuration, in Hugging Face field names, with the
    shape helpers that need nothing but the fields (the counts are :class:`moe.config.MoEModel`'s)."""

    name: str
    architecture: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    tie_word_embeddings: bool
    intermediate_size: int
    moe_intermediate_size: int
    num_routed_experts: int
    num_shared_experts: int
    experts_per_token: int
    attention: AttentionSpec
    moe_layers: tuple[bool, ...]
    shared_expert_intermediate_size: int = 0
    shared_expert_gate: bool = False
    n_group: int = 1
    topk_group: int = 1
    scoring_func: str = "softmax"
    router_bias: bool = False
    expert_bias: bool = False
    num_hash_layers: int = 0
    hc_mult: int = 0
    num_mtp_modules: int = 0
    max_position_embeddings: int = 0
    expert_dtype: str = "bf16"
    source: str = ""
    notes: tuple[str, ...] = ()
    hf_config: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    # ---- shape -------------------------------------------------------------------------------
    @property
    def num_dense_layers(self) -> int:
        """Main layers whose FFN is a dense MLP."""
        return sum(1 for is_moe in self.moe_layers if not is_moe)

    @property
    def num_moe_layers(self) -> int:
        """Main layers whose FFN is a Mixture of Experts."""
        return sum(1 for is_moe in self.moe_layers if is_moe)

    @property
    def shared_intermediate_total(self) -> int:
        """Intermediate width of all shared experts of a MoE layer together (0 without any):
        ``shared_expert_intermediate_size`` already holds the total (DeepSeek-V2's two shared
        experts of 1,536 are one 3,072-wide MLP), else ``num_shared_experts`` experts of
        ``moe_intermediate_size``."""
        if self.num_shared_experts <= 0:
            return 0
        width = self.shared_expert_intermediate_size or self.num_shared_experts * self.moe_intermediate_size
        return int(width)

    def is_moe_layer(self, layer: int) -> bool:
        """Whether layer ``layer`` has an MoE FFN (MTP layers, indices >= num_layers, always do)."""
        self.check_layer(layer, allow_mtp=True)
        return layer >= self.num_layers or self.moe_layers[layer]

    def check_layer(self, layer: int, allow_mtp: bool = False) -> None:
        """A ValueError naming the valid range unless ``layer`` indexes a main layer (or, with
        ``allow_mtp``, an MTP module, numbered from ``num_layers``)."""
        top = self.num_layers + (self.num_mtp_modules if allow_mtp else 0)
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < top:
            extra = (
                f" (main layers 0-{self.num_layers - 1}, MTP modules from {self.num_layers})"
                if allow_mtp and self.num_mtp_modules
                else ""
            )
            raise ValueError(
                f"layer must be an integer from 0 to {top - 1} for {self.name}{extra}; got {layer!r}."
            )
