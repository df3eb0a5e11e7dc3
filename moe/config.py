"""Model configurations: a Hugging Face ``config.json`` becomes a frozen :class:`MoEModel`.

Field names follow Hugging Face where one exists. The parser dispatches on ``model_type`` (or, when
that is absent, on ``architectures``); unknown keys are ignored because real configs carry many
(tokenizer ids, rope scaling, quantisation...). Missing required fields and non-positive, NaN or
non-integer sizes raise :class:`ValueError` with a sentence naming the field.

The fields and shape helpers of a model are :class:`moe.spec.ModelSpec`'s. Accounting (parameters,
FLOPs, KV cache, memory) lives in :mod:`moe.accounting`, which reads a ``ModelSpec``, and the methods
:class:`MoEModel` adds to it are thin wrappers around it; the operators the simulators time are in
:mod:`moe.operators` (which reads a model, never the other way round).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any

from moe import accounting
from moe.spec import AttentionSpec, ModelSpec

__all__ = [
    "AttentionSpec",
    "MoEModel",
    "SUPPORTED_MODEL_TYPES",
    "from_hf_config",
]

# model_type -> family parser name. Architectures map onto the same model types.
SUPPORTED_MODEL_TYPES: dict[str, str] = {
    "deepseek_v2": "deepseek",
    "deepseek_v3": "deepseek",
    "deepseek_v32": "deepseek",
    "deepseek_v4": "deepseek_v4",
    "mixtral": "mixtral",
    "qwen2_moe": "qwen_moe",
    "qwen3_moe": "qwen_moe",
    "gpt_oss": "gpt_oss",
    "llama4": "llama4",
    "llama4_text": "llama4",
}

_ARCHITECTURES: dict[str, str] = {
    "DeepseekV2ForCausalLM": "deepseek_v2",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    "DeepseekV32ForCausalLM": "deepseek_v32",
    "DeepseekV4ForCausalLM": "deepseek_v4",
    "MixtralForCausalLM": "mixtral",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "GptOssForCausalLM": "gpt_oss",
    "Llama4ForConditionalGeneration": "llama4",
    "Llama4ForCausalLM": "llama4_text",
}


@dataclass(frozen=True)
class MoEModel(ModelSpec):
    """A Mixture-of-Experts (or dense) decoder, in Hugging Face field names.

    Counts follow ``DESIGN.md``: ``total_params`` and ``active_params`` exclude the MTP modules
    (itemised in ``params_breakdown["mtp"]``); ``active_params`` includes embedding, output head and
    router. See :mod:`moe.accounting` for the formulas and their sources.
    """

    # ---- parameters --------------------------------------------------------------------------
    @cached_property
    def params_breakdown(self) -> dict[str, int]:
        """Parameters by component (total, MTP itemised separately under "mtp")."""
        return accounting.params_breakdown(self)

    @cached_property
    def active_params_breakdown(self) -> dict[str, int]:
        """Parameters one token uses, by component (MTP excluded)."""
        return accounting.active_params_breakdown(self)

    @cached_property
    def total_params(self) -> int:
        """All parameters except the MTP modules (DESIGN.md convention)."""
        return sum(v for k, v in self.params_breakdown.items() if k != "mtp")

    @cached_property
    def active_params(self) -> int:
        """Parameters used per token: embedding, head and router included, MTP excluded."""
        return sum(self.active_params_breakdown.values())

    @property
    def active_non_embedding_params(self) -> int:
        """Active parameters minus the input embedding (output head kept)."""
        return self.active_params - self.params_breakdown["embedding"]

    @property
    def mtp_params(self) -> int:
        """Parameters of the multi-token-prediction modules (embedding and head shared, not counted)."""
        return self.params_breakdown["mtp"]

    # ---- FLOPs -------------------------------------------------------------------------------
    def forward_flops_per_token(
        self, context_len: int = 4096, causal: bool = True
    ) -> accounting.FlopsBreakdown:
        """Forward FLOP per token, averaged over a sequence of ``context_len`` (see accounting)."""
        return accounting.forward_flops_per_token(self, context_len, causal)

    def attention_flops_per_token(self, context_len: int = 4096, causal: bool = True) -> float:
        """Forward score + value (and indexer score) FLOP per token, averaged over the sequence."""
        return accounting.attention_flops_per_token(self, context_len, causal)

    def training_flops_per_token(self, seq_len: int = 4096, causal: bool = True) -> float:
        """6 x active non-embedding params + 3 x forward attention FLOP at ``seq_len`` (DESIGN.md)."""
        return accounting.training_flops_per_token(self, seq_len, causal)

    # ---- memory ------------------------------------------------------------------------------
    def kv_cache_bytes_per_token(self, dtype: str = "bf16", context_len: int = 4096) -> float:
        """KV-cache bytes per token at ``context_len`` (total cache / context_len; MTP excluded)."""
        return accounting.kv_cache_bytes_per_token(self, dtype, context_len)

    def kv_cache_breakdown(self, dtype: str = "bf16", context_len: int = 4096) -> dict[str, float]:
        """KV-cache bytes per token by part (attention entries, indexer keys, compressor state)."""
        return accounting.kv_cache_breakdown(self, dtype, context_len)

    def memory_bytes(self, recipe: str = "bf16", include_mtp: bool = True) -> accounting.MemoryBreakdown:
        """Weight, gradient, master-weight and optimizer bytes for a precision recipe."""
        return accounting.memory_bytes(self, recipe, include_mtp)

    def weight_bytes(self, recipe: str = "bf16", include_mtp: bool = True) -> float:
        """Bytes of the weights as served under ``recipe`` (see accounting.memory_bytes)."""
        return accounting.memory_bytes(self, recipe, include_mtp).weights_bytes

    def to_dict(self) -> dict[str, Any]:
        """Plain-data view: the configuration plus the headline accounting."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if k in ("hf_config",) or k.startswith("_") or k in _CACHED:
                continue
            if isinstance(v, AttentionSpec):
                out[k] = v.to_dict()
            elif isinstance(v, tuple):
                out[k] = list(v)
            else:
                out[k] = v
        out["num_dense_layers"] = self.num_dense_layers
        out["num_moe_layers"] = self.num_moe_layers
        out["total_params"] = self.total_params
        out["active_params"] = self.active_params
        out["params_breakdown"] = dict(self.params_breakdown)
        return out


_CACHED = {"params_breakdown", "active_params_breakdown", "total_params", "active_params"}


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


class _Fields:
    """Typed, validated access to a raw config dict; every error names the field."""

    def __init__(self, raw: Mapping[str, Any], what: str):
        self.raw = raw
        self.what = what

    def has(self, key: str) -> bool:
        return key in self.raw and self.raw[key] is not None

    def first_key(self, *keys: str) -> str | None:
        for k in keys:
            if self.has(k):
                return k
        return None

    def size(self, *keys: str, default: int | None = None, allow_zero: bool = False) -> int:
        """A positive integer size from the first of ``keys`` present."""
        key = self.first_key(*keys)
        if key is None:
            if default is not None:
                return default
            names = " or ".join(repr(k) for k in keys)
            raise ValueError(f"{self.what} config is missing required field {names}.")
        return _as_size(self.raw[key], key, self.what, allow_zero=allow_zero)

    def optional_size(self, key: str) -> int:
        """A size that may be absent or null (0 then), e.g. V2-Lite's q_lora_rank."""
        if not self.has(key):
            return 0
        return _as_size(self.raw[key], key, self.what, allow_zero=True)

    def flag(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        value = self.raw[key]
        if not isinstance(value, bool):
            raise ValueError(f"{self.what} config field {key!r} must be true or false; got {value!r}.")
        return value

    def text(self, key: str, default: str) -> str:
        if not self.has(key):
            return default
        value = self.raw[key]
        if not isinstance(value, str):
            raise ValueError(f"{self.what} config field {key!r} must be a string; got {value!r}.")
        return value

    def choice(self, key: str, default: str, allowed: Sequence[str]) -> str:
        """A string that must be one of ``allowed`` (absent or null: ``default``)."""
        value = self.text(key, default)
        if value not in allowed:
            raise ValueError(
                f"{self.what} config field {key!r} must be one of "
                f"{', '.join(repr(a) for a in allowed)}; got {value!r}."
            )
        return value


def _as_size(value: Any, key: str, what: str, allow_zero: bool = False) -> int:
    lowest = "zero or a positive integer" if allow_zero else "a positive integer"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} config field {key!r} must be {lowest}; got {value!r}.")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{what} config field {key!r} must be {lowest}; got {value!r}.")
        value = int(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{what} config field {key!r} must be {lowest}; got {value!r}.")
    return int(value)


def _resolve_model_type(raw: Mapping[str, Any]) -> str:
    supported = sorted(SUPPORTED_MODEL_TYPES)
    model_type = raw.get("model_type")
    if isinstance(model_type, str) and model_type in SUPPORTED_MODEL_TYPES:
        return model_type
    archs = raw.get("architectures") or []
    if isinstance(archs, str):
        archs = [archs]
    for arch in archs if isinstance(archs, list) else []:
        if arch in _ARCHITECTURES:
            return _ARCHITECTURES[arch]
    named = model_type if model_type else (archs[0] if archs else None)
    if named is None:
        raise ValueError(
            "config has neither 'model_type' nor 'architectures', so its architecture is unknown; "
            f"supported model types: {', '.join(supported)}."
        )
    raise ValueError(
        f"unsupported architecture {named!r} (model_type={model_type!r}, architectures={archs!r}); "
        f"supported model types: {', '.join(supported)} "
        f"(architectures: {', '.join(sorted(_ARCHITECTURES))})."
    )


def _load(path_or_dict: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    if isinstance(path_or_dict, Mapping):
        return dict(path_or_dict), "dict"
    if not isinstance(path_or_dict, str | Path):
        raise ValueError(
            f"from_hf_config takes a path to a config.json or a dict; got {type(path_or_dict).__name__}."
        )
    path = Path(path_or_dict)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ValueError(f"no config file at {str(path)!r}; pass a config.json path, its folder, or a dict.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}.") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object, not {type(raw).__name__}.")
    return raw, str(path)


def from_hf_config(path_or_dict: str | Path | Mapping[str, Any], name: str | None = None) -> MoEModel:
    """Build a :class:`MoEModel` from a Hugging Face ``config.json`` (path, folder or dict).

    Supported: DeepSeek-V2/V2-Lite/V3/V3.2/V4, Mixtral, Qwen2-MoE, Qwen3-MoE, gpt-oss, Llama 4. A
    config that nests its text model under ``text_config`` (Llama 4) is read from there; the outer
    ``architectures``, ``tie_word_embeddings`` (Llama 4 keeps it outside ``text_config``) and
    ``_``-prefixed notes (``_source``, ``_name``) apply unless the text model sets its own.
    """
    raw, origin = _load(path_or_dict)
    if "text_config" in raw and isinstance(raw["text_config"], Mapping) and "hidden_size" not in raw:
        inner = dict(raw["text_config"])
        inner.setdefault("architectures", raw.get("architectures"))
        for key, value in raw.items():
            if key == "tie_word_embeddings" or key.startswith("_"):
                inner.setdefault(key, value)
        raw = inner
    model_type = _resolve_model_type(raw)
    family = SUPPORTED_MODEL_TYPES[model_type]
    if name is None:
        name = str(raw.get("_name") or raw.get("_name_or_path") or model_type)
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string; got {name!r}.")
    parser = _PARSERS[family]
    source = str(raw.get("_source", origin))
    return parser(raw, model_type, name, source)


def _common_tail(f: _Fields) -> dict[str, Any]:
    return {
        "tie_word_embeddings": f.flag("tie_word_embeddings", False),
        "max_position_embeddings": f.size("max_position_embeddings", default=0, allow_zero=True),
    }


# DeepSeek router settings the parsers and the simulators understand. Scoring: V2 "softmax", V3 and
# V3.2 "sigmoid", V4 "sqrtsoftplus". Top-k: V2-Lite "greedy", V2 "group_limited_greedy", V3 and later
# "noaux_tc" (auxiliary-loss-free balancing with a per-expert score-correction bias).
_DEEPSEEK_SCORING_FUNCS = ("softmax", "sigmoid", "sqrtsoftplus")
_DEEPSEEK_TOPK_METHODS = ("greedy", "group_limited_greedy", "noaux_tc")


def _check_groups(what: str, experts: int, n_group: int, topk_group: int, top_k: int) -> None:
    """Group-limited routing: the experts split evenly into n_group groups, topk_group of them kept."""
    if experts % n_group:
        raise ValueError(
            f"{what} config has n_group={n_group} but n_routed_experts={experts}; n_group must divide "
            "the number of routed experts (equal-sized expert groups)."
        )
    if topk_group > n_group:
        raise ValueError(
            f"{what} config has topk_group={topk_group} but n_group={n_group}; topk_group (expert "
            "groups kept per token) must be from 1 to n_group."
        )
    reachable = topk_group * (experts // n_group)
    if reachable < top_k:
        raise ValueError(
            f"{what} config keeps topk_group={topk_group} of n_group={n_group} groups, {reachable} experts, "
            f"fewer than num_experts_per_tok={top_k}: a token could not find its experts."
        )


def _check_topk(what: str, experts: int, top_k: int) -> None:
    if top_k > experts:
        raise ValueError(
            f"{what} config routes each token to {top_k} experts but has only {experts}; "
            "num_experts_per_tok must not exceed the number of routed experts."
        )


def _parse_deepseek(raw: Mapping[str, Any], model_type: str, name: str, source: str) -> MoEModel:
    what = {"deepseek_v2": "DeepSeek-V2", "deepseek_v3": "DeepSeek-V3", "deepseek_v32": "DeepSeek-V3.2"}[
        model_type
    ]
    f = _Fields(raw, what)
    hidden = f.size("hidden_size")
    layers = f.size("num_hidden_layers")
    heads = f.size("num_attention_heads")
    experts = f.size("n_routed_experts")
    top_k = f.size("num_experts_per_tok")
    _check_topk(what, experts, top_k)
    first_dense = f.size("first_k_dense_replace", default=0, allow_zero=True)
    freq = f.size("moe_layer_freq", default=1)
    if first_dense > layers:
        raise ValueError(
            f"{what} config has first_k_dense_replace={first_dense} but only {layers} layers; "
            "it must not exceed num_hidden_layers."
        )
    moe_layers = tuple(i >= first_dense and i % freq == 0 for i in range(layers))
    index_topk = f.optional_size("index_topk")
    index_heads = f.optional_size("index_n_heads") if index_topk else 0
    index_dim = f.optional_size("index_head_dim") if index_topk else 0
    if index_topk and (index_heads == 0 or index_dim == 0):
        raise ValueError(
            f"{what} config sets index_topk={index_topk} but not a positive 'index_n_heads' and "
            "'index_head_dim'; the sparse-attention indexer needs both."
        )
    attention = AttentionSpec(
        kind="mla",
        num_heads=heads,
        num_kv_heads=heads,
        head_dim=f.size("qk_nope_head_dim") + f.size("qk_rope_head_dim"),
        q_lora_rank=f.optional_size("q_lora_rank"),
        kv_lora_rank=f.size("kv_lora_rank"),
        qk_nope_head_dim=f.size("qk_nope_head_dim"),
        qk_rope_head_dim=f.size("qk_rope_head_dim"),
        v_head_dim=f.size("v_head_dim"),
        layer_windows=tuple([None] * layers),
        qkv_bias=f.flag("attention_bias", False),
        o_bias=f.flag("attention_bias", False),
        index_n_heads=index_heads,
        index_head_dim=index_dim,
        index_topk=index_topk,
    )
    topk_method = f.choice("topk_method", "greedy", _DEEPSEEK_TOPK_METHODS)
    scoring_func = f.choice("scoring_func", "softmax", _DEEPSEEK_SCORING_FUNCS)
    n_group = f.size("n_group", default=1)
    topk_group = f.size("topk_group", default=1)
    if topk_method != "greedy":  # greedy top-k ignores the expert groups
        _check_groups(what, experts, n_group, topk_group, top_k)
    notes = []
    if index_topk:
        notes.append(
            "DeepSeek Sparse Attention (V3.2-Exp paper Sec. 2): attention runs in MLA's MQA form over the "
            "576-d latent cache, each query attending to index_topk selected tokens; the lightning "
            "indexer scores every preceding token with index_n_heads x index_head_dim products."
        )
    if not attention.q_lora_rank:
        notes.append("No query compression (q_lora_rank null): a full q_proj, as in V2-Lite.")
    return MoEModel(
        name=name,
        architecture=model_type,
        hidden_size=hidden,
        num_layers=layers,
        vocab_size=f.size("vocab_size"),
        intermediate_size=f.size("intermediate_size")
        if first_dense
        else f.size("intermediate_size", default=0, allow_zero=True),
        moe_intermediate_size=f.size("moe_intermediate_size"),
        num_routed_experts=experts,
        num_shared_experts=f.size("n_shared_experts", default=0, allow_zero=True),
        shared_expert_intermediate_size=f.size("n_shared_experts", default=0, allow_zero=True)
        * f.size("moe_intermediate_size"),
        experts_per_token=top_k,
        attention=attention,
        moe_layers=moe_layers,
        n_group=n_group,
        topk_group=topk_group,
        scoring_func=scoring_func,
        # noaux_tc keeps a per-expert score-correction bias (HF: e_score_correction_bias).
        router_bias=topk_method == "noaux_tc",
        num_mtp_modules=f.size("num_nextn_predict_layers", default=0, allow_zero=True),
        source=source,
        notes=tuple(notes),
        hf_config=MappingProxyType(dict(raw)),
        **_common_tail(f),
    )


def _parse_deepseek_v4(raw: Mapping[str, Any], model_type: str, name: str, source: str) -> MoEModel:
    what = "DeepSeek-V4"
    f = _Fields(raw, what)
    hidden = f.size("hidden_size")
    layers = f.size("num_hidden_layers")
    heads = f.size("num_attention_heads")
    experts = f.size("n_routed_experts")
    top_k = f.size("num_experts_per_tok")
    _check_topk(what, experts, top_k)
    mtp = f.size("num_nextn_predict_layers", default=0, allow_zero=True)
    if not f.has("compress_ratios"):
        raise ValueError(f"{what} config is missing required field 'compress_ratios'.")
    ratios_raw = raw["compress_ratios"]
    if not isinstance(ratios_raw, Sequence) or isinstance(ratios_raw, str):
        raise ValueError(f"{what} config field 'compress_ratios' must be a list of integers, one per layer.")
    ratios = [_as_size(r, "compress_ratios", what, allow_zero=True) for r in ratios_raw]
    if len(ratios) < layers:
        raise ValueError(
            f"{what} config lists {len(ratios)} compress_ratios for {layers} layers; "
            "it needs one per layer (plus one per MTP module)."
        )
    window = f.size("sliding_window")
    head_dim = f.size("head_dim")
    rope = f.size("qk_rope_head_dim")
    if rope >= head_dim:
        raise ValueError(
            f"{what} config has qk_rope_head_dim={rope} >= head_dim={head_dim}; it must be smaller."
        )
    o_groups = f.size("o_groups")
    if heads % o_groups:
        raise ValueError(f"{what} config: num_attention_heads={heads} must divide by o_groups={o_groups}.")
    needs_indexer = any(r == 4 for r in ratios[:layers])
    attention = AttentionSpec(
        kind="csa",
        num_heads=heads,
        num_kv_heads=f.size("num_key_value_heads", default=1),
        head_dim=head_dim,
        q_lora_rank=f.size("q_lora_rank"),
        qk_nope_head_dim=head_dim - rope,
        qk_rope_head_dim=rope,
        v_head_dim=head_dim,
        sliding_window=window,
        layer_windows=tuple([window] * layers),
        sinks=True,  # attn_sink, one per head (reference inference/model.py)
        index_n_heads=f.size("index_n_heads") if needs_indexer else 0,
        index_head_dim=f.size("index_head_dim") if needs_indexer else 0,
        index_topk=f.size("index_topk") if needs_indexer else 0,
        o_groups=o_groups,
        o_lora_rank=f.size("o_lora_rank"),
        compress_ratios=tuple(ratios[:layers]),
        mtp_compress_ratio=ratios[layers] if len(ratios) > layers else 0,
    )
    hash_layers = f.size("num_hash_layers", default=0, allow_zero=True)
    notes = [
        "V4 routes the first num_hash_layers MoE layers by a token-id -> expert table (tid2eid, an "
        "integer buffer of vocab x top-k); it is not a trainable parameter and is not counted.",
        "Every V4 layer is an MoE layer (no dense FFN layers); the shared expert has moe_intermediate_size.",
        "Attention FLOP: a query scores its sliding window (<= sliding_window raw entries) plus "
        "floor(L/128) compressed entries in ratio-128 layers or min(index_topk, floor(L/4)) in "
        "ratio-4 layers; one 512-d entry serves as key and value (reference inference/model.py); the "
        "lightning indexer scores all floor(L/4) compressed index keys.",
        "KV cache: window + compressed 512-d entries and 128-d indexer keys per layer, at the chosen "
        "dtype (the reference code keeps RoPE dims in BF16 and the rest in FP8: dtype 'fp8_mixed'), "
        "plus the compressors' pending state in FP32 as in the reference code.",
        "Assumed: routed experts FP4 when config.json has no expert_dtype (the V4-Pro config lacks the "
        "key; its safetensors listing stores experts as packed FP4). Not published: optimizer-state "
        "precision (BF16 moments assumed, as V3).",
    ]
    return MoEModel(
        name=name,
        architecture=model_type,
        hidden_size=hidden,
        num_layers=layers,
        vocab_size=f.size("vocab_size"),
        intermediate_size=0,
        moe_intermediate_size=f.size("moe_intermediate_size"),
        num_routed_experts=experts,
        num_shared_experts=f.size("n_shared_experts", default=0, allow_zero=True),
        shared_expert_intermediate_size=f.size("n_shared_experts", default=0, allow_zero=True)
        * f.size("moe_intermediate_size"),
        experts_per_token=top_k,
        attention=attention,
        moe_layers=tuple([True] * layers),
        scoring_func=f.choice("scoring_func", "sqrtsoftplus", _DEEPSEEK_SCORING_FUNCS),
        router_bias=f.choice("topk_method", "noaux_tc", _DEEPSEEK_TOPK_METHODS) == "noaux_tc",
        num_hash_layers=hash_layers,
        hc_mult=f.size("hc_mult", default=0, allow_zero=True),
        num_mtp_modules=mtp,
        expert_dtype=f.text("expert_dtype", "fp4"),
        source=source,
        notes=tuple(notes),
        hf_config=MappingProxyType(dict(raw)),
        **_common_tail(f),
    )


def _gqa_attention(f: _Fields, layers: int, hidden: int, **extra: Any) -> AttentionSpec:
    heads = f.size("num_attention_heads")
    kv_heads = f.size("num_key_value_heads", default=heads)
    if heads % kv_heads:
        raise ValueError(
            f"{f.what} config: num_attention_heads={heads} must be a multiple of "
            f"num_key_value_heads={kv_heads}."
        )
    if f.has("head_dim"):
        head_dim = f.size("head_dim")
    else:
        if hidden % heads:
            raise ValueError(
                f"{f.what} config has no 'head_dim' and hidden_size={hidden} does not divide by "
                f"num_attention_heads={heads}; add head_dim."
            )
        head_dim = hidden // heads
    window = extra.pop("window", None)
    layer_windows = extra.pop("layer_windows", tuple([window] * layers))
    return AttentionSpec(
        kind="mha" if kv_heads == heads else "gqa",
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        sliding_window=window,
        layer_windows=layer_windows,
        **extra,
    )


def _parse_mixtral(raw: Mapping[str, Any], model_type: str, name: str, source: str) -> MoEModel:
    f = _Fields(raw, "Mixtral")
    hidden = f.size("hidden_size")
    layers = f.size("num_hidden_layers")
    experts = f.size("num_local_experts")
    top_k = f.size("num_experts_per_tok")
    _check_topk("Mixtral", experts, top_k)
    window = f.size("sliding_window") if f.has("sliding_window") else None
    ffn = f.size("intermediate_size")
    return MoEModel(
        name=name,
        architecture=model_type,
        hidden_size=hidden,
        num_layers=layers,
        vocab_size=f.size("vocab_size"),
        intermediate_size=0,
        moe_intermediate_size=ffn,
        num_routed_experts=experts,
        num_shared_experts=0,
        experts_per_token=top_k,
        attention=_gqa_attention(f, layers, hidden, window=window),
        moe_layers=tuple([True] * layers),
        scoring_func="softmax",
        source=source,
        hf_config=MappingProxyType(dict(raw)),
        **_common_tail(f),
    )


def _parse_qwen_moe(raw: Mapping[str, Any], model_type: str, name: str, source: str) -> MoEModel:
    what = "Qwen2-MoE" if model_type == "qwen2_moe" else "Qwen3-MoE"
    f = _Fields(raw, what)
    hidden = f.size("hidden_size")
    layers = f.size("num_hidden_layers")
    experts = f.size("num_experts")
    top_k = f.size("num_experts_per_tok")
    _check_topk(what, experts, top_k)
    step = f.size("decoder_sparse_step", default=1)
    mlp_only = raw.get("mlp_only_layers") or []
    if not isinstance(mlp_only, list):
        raise ValueError(f"{what} config field 'mlp_only_layers' must be a list of layer indices.")
    mlp_only_set = {_as_size(i, "mlp_only_layers", what, allow_zero=True) for i in mlp_only}
    moe_layers = tuple((i not in mlp_only_set) and (i + 1) % step == 0 for i in range(layers))
    window = None
    if f.flag("use_sliding_window", False) and f.has("sliding_window"):
        window = f.size("sliding_window")
    is_qwen2 = model_type == "qwen2_moe"
    shared_size = f.size("shared_expert_intermediate_size", default=0, allow_zero=True)
    attention = _gqa_attention(
        f,
        layers,
        hidden,
        window=window,
        qkv_bias=f.flag("attention_bias", is_qwen2) or is_qwen2,
        qk_norm=not is_qwen2,
    )
    return MoEModel(
        name=name,
        architecture=model_type,
        hidden_size=hidden,
        num_layers=layers,
        vocab_size=f.size("vocab_size"),
        intermediate_size=f.size("intermediate_size")
        if not all(moe_layers)
        else f.size("intermediate_size", default=0, allow_zero=True),
        moe_intermediate_size=f.size("moe_intermediate_size"),
        num_routed_experts=experts,
        num_shared_experts=1 if shared_size else 0,
        shared_expert_intermediate_size=shared_size,
        shared_expert_gate=bool(shared_size),
        experts_per_token=top_k,
        attention=attention,
        moe_layers=moe_layers,
        scoring_func="softmax",
        source=source,
        hf_config=MappingProxyType(dict(raw)),
        **_common_tail(f),
    )


def _parse_gpt_oss(raw: Mapping[str, Any], model_type: str, name: str, source: str) -> MoEModel:
    f = _Fields(raw, "gpt-oss")
    hidden = f.size("hidden_size")
    layers = f.size("num_hidden_layers")
    experts = f.size("num_local_experts", "num_experts")
    top_k = f.size("num_experts_per_tok", "experts_per_token")
    _check_topk("gpt-oss", experts, top_k)
    window = f.size("sliding_window") if f.has("sliding_window") else None
    layer_types = raw.get("layer_types")
    if layer_types is None:
        # gpt-oss alternates banded (sliding) and dense layers, starting with a banded one.
        layer_types = ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers)]
    if not isinstance(layer_types, list) or len(layer_types) != layers:
        raise ValueError(f"gpt-oss config field 'layer_types' must list one type per layer ({layers}).")
    windows: list[int | None] = []
    for t in layer_types:
        if t == "sliding_attention":
            if window is None:
                raise ValueError("gpt-oss config has sliding_attention layers but no 'sliding_window'.")
            windows.append(window)
        elif t == "full_attention":
            windows.append(None)
        else:
            raise ValueError(
                f"gpt-oss config layer type {t!r} is unknown; allowed: 'sliding_attention', 'full_attention'."
            )
    bias = f.flag("attention_bias", True)
    attention = _gqa_attention(
        f, layers, hidden, window=window, layer_windows=tuple(windows), qkv_bias=bias, o_bias=bias, sinks=True
    )
    quant = raw.get("quantization_config") or {}
    expert_dtype = "mxfp4" if isinstance(quant, Mapping) and quant.get("quant_method") == "mxfp4" else "bf16"
    return MoEModel(
        name=name,
        architecture=model_type,
        hidden_size=hidden,
        num_layers=layers,
        vocab_size=f.size("vocab_size"),
        intermediate_size=0,
        moe_intermediate_size=f.size("intermediate_size"),
        num_routed_experts=experts,
        num_shared_experts=0,
        experts_per_token=top_k,
        attention=attention,
        moe_layers=tuple([True] * layers),
        scoring_func="softmax",
        router_bias=True,
        expert_bias=True,
        expert_dtype=expert_dtype,
        source=source,
        hf_config=MappingProxyType(dict(raw)),
        **_common_tail(f),
    )


def _layer_list(raw: Mapping[str, Any], key: str, what: str) -> list[int] | None:
    """An optional list of integers (``moe_layers``, ``no_rope_layers``); None when absent or null."""
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError(f"{what} config field {key!r} must be a list of integers; got {value!r}.")
    return [_as_size(v, key, what, allow_zero=True) for v in value]


def _parse_llama4(raw: Mapping[str, Any], model_type: str, name: str, source: str) -> MoEModel:
    """Llama 4 text decoder (HF ``modeling_llama4.py``, ``Llama4TextConfig``).

    * MoE layers: ``moe_layers`` when given, else every ``interleave_moe_layer_step``-th layer
      counting from ``step - 1`` (HF default: Scout step 1 = all 48 layers, Maverick step 2 = the odd
      layers). Other layers have a dense SwiGLU MLP of ``intermediate_size_mlp``.
    * An MoE layer: a bias-free router over ``num_local_experts`` routed experts, top
      ``num_experts_per_tok`` (sigmoid of the chosen logit scales the expert input), each expert a
      SwiGLU of ``intermediate_size``; plus one always-on shared expert of ``intermediate_size``
      with no gate.
    * Attention: GQA; layers with ``no_rope_layers[i] == 1`` use RoPE and, when
      ``attention_chunk_size`` is set, chunked local attention (a query sees only its own chunk);
      the others (every fourth by default, HF ``no_rope_layer_interval`` 4) are NoPE layers with
      full causal attention. The QK norm (``use_qk_norm``) is a parameter-free L2 norm, and the
      NoPE layers' attention temperature tuning a per-position scale: neither holds parameters.
    """
    what = "Llama 4"
    f = _Fields(raw, what)
    hidden = f.size("hidden_size")
    layers = f.size("num_hidden_layers")
    experts = f.size("num_local_experts")
    top_k = f.size("num_experts_per_tok")
    _check_topk(what, experts, top_k)
    step = f.size("interleave_moe_layer_step", default=1)
    moe_list = _layer_list(raw, "moe_layers", what)
    if moe_list is None:
        moe_list = list(range(step - 1, layers, step))
    bad = [i for i in moe_list if i >= layers]
    if bad:
        raise ValueError(
            f"{what} config lists moe_layers {bad} but has only {layers} layers (indices 0-{layers - 1})."
        )
    moe_set = set(moe_list)
    moe_layers = tuple(i in moe_set for i in range(layers))
    has_dense = not all(moe_layers)
    rope_list = _layer_list(raw, "no_rope_layers", what)
    if not rope_list:  # HF: an empty or absent list falls back to the interval rule
        interval = f.size("no_rope_layer_interval", default=4)
        rope_list = [int((i + 1) % interval != 0) for i in range(layers)]
    if len(rope_list) != layers or any(v not in (0, 1) for v in rope_list):
        raise ValueError(
            f"{what} config field 'no_rope_layers' must hold one 0 or 1 per layer ({layers}); got "
            f"{len(rope_list)} values {sorted(set(rope_list))}."
        )
    chunk = f.size("attention_chunk_size") if f.has("attention_chunk_size") else None
    chunked = tuple(chunk is not None and bool(v) for v in rope_list)
    bias = f.flag("attention_bias", False)
    attention = _gqa_attention(
        f,
        layers,
        hidden,
        qkv_bias=bias,
        o_bias=bias,
        chunk_size=chunk,
        layer_chunked=chunked,
    )
    expert_size = f.size("intermediate_size")
    notes = [
        "Llama 4 MoE layer: one shared expert (intermediate_size, no gate) plus top-k routed experts; "
        "dense layers use intermediate_size_mlp (HF modeling_llama4.py Llama4TextMoe, Llama4TextMLP).",
        "QK L2 norm and NoPE temperature tuning hold no parameters and are not timed as operators.",
    ]
    if chunk is not None:
        notes.append(
            f"Chunked local attention on {sum(chunked)} of {layers} layers (RoPE layers), chunk "
            f"{chunk} tokens: their KV cache is capped at the chunk (min(L, {chunk}) entries per "
            "sequence); the NoPE layers attend to the whole context."
        )
    return MoEModel(
        name=name,
        architecture=model_type,
        hidden_size=hidden,
        num_layers=layers,
        vocab_size=f.size("vocab_size"),
        intermediate_size=f.size("intermediate_size_mlp") if has_dense else 0,
        moe_intermediate_size=expert_size,
        num_routed_experts=experts,
        num_shared_experts=1,
        shared_expert_intermediate_size=expert_size,
        experts_per_token=top_k,
        attention=attention,
        moe_layers=moe_layers,
        scoring_func="sigmoid",
        source=source,
        notes=tuple(notes),
        hf_config=MappingProxyType(dict(raw)),
        **_common_tail(f),
    )


_PARSERS = {
    "deepseek": _parse_deepseek,
    "deepseek_v4": _parse_deepseek_v4,
    "mixtral": _parse_mixtral,
    "qwen_moe": _parse_qwen_moe,
    "gpt_oss": _parse_gpt_oss,
    "llama4": _parse_llama4,
}
