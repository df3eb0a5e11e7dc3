"""from_hf_config, the catalog, and what bad input gets."""

from __future__ import annotations

import json
import math

import pytest

import moe


def _v3_config() -> dict:
    return {k: v for k, v in moe.get("deepseek-v3").hf_config.items()}


def test_catalog_names_and_sources():
    expected = {
        "deepseek-v2-lite",
        "deepseek-v2",
        "deepseek-v3",
        "deepseek-v3.2",
        "deepseek-v4-flash",
        "deepseek-v4-pro",
        "mixtral-8x7b",
        "mixtral-8x22b",
        "qwen3-30b-a3b",
        "qwen3-235b-a22b",
        "gpt-oss-120b",
        "gpt-oss-20b",
    }
    assert expected <= set(moe.names())
    for name in moe.names():
        m = moe.get(name)
        assert m.name == name
        assert m.source and "config.json" in m.source, name
        json.dumps(m.to_dict())  # plain data


def test_get_accepts_aliases_and_objects():
    m = moe.get("DeepSeek-V3")
    assert moe.get("v3") is m
    assert moe.get("deepseek-ai/DeepSeek-V3") is m
    assert moe.get(m) is m


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="known models: .*deepseek-v3"):
        moe.get("gpt-9")


def test_from_path_and_folder(tmp_path):
    cfg = _v3_config()
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    a = moe.from_hf_config(tmp_path / "config.json", name="x")
    b = moe.from_hf_config(str(tmp_path))
    assert a.total_params == b.total_params == moe.get("deepseek-v3").total_params
    with pytest.raises(ValueError, match="no config file"):
        moe.from_hf_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        moe.from_hf_config(tmp_path / "bad.json")


def test_unknown_architecture_is_named_with_the_supported_list():
    with pytest.raises(ValueError, match=r"unsupported architecture 'llama'.*deepseek_v3.*mixtral"):
        moe.from_hf_config({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    with pytest.raises(ValueError, match="neither 'model_type' nor 'architectures'"):
        moe.from_hf_config({"hidden_size": 4096})


def test_dispatch_on_architectures_when_model_type_missing():
    cfg = _v3_config()
    del cfg["model_type"]
    assert moe.from_hf_config(cfg).architecture == "deepseek_v3"


@pytest.mark.parametrize("field", ["hidden_size", "kv_lora_rank", "n_routed_experts", "num_hidden_layers"])
def test_missing_field_is_named(field):
    cfg = _v3_config()
    del cfg[field]
    with pytest.raises(ValueError, match=f"missing required field '{field}'"):
        moe.from_hf_config(cfg)


@pytest.mark.parametrize("value", [-7168, 0, math.nan, math.inf, 7168.5, "7168", True])
def test_bad_sizes_are_refused(value):
    cfg = _v3_config()
    cfg["hidden_size"] = value
    with pytest.raises(ValueError, match="'hidden_size' must be a positive integer"):
        moe.from_hf_config(cfg)


def test_cross_field_checks():
    cfg = _v3_config()
    cfg["num_experts_per_tok"] = 300
    with pytest.raises(ValueError, match="must not exceed the number of routed experts"):
        moe.from_hf_config(cfg)
    mix = dict(moe.get("mixtral-8x7b").hf_config)
    mix["num_key_value_heads"] = 5
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        moe.from_hf_config(mix)
    v4 = dict(moe.get("deepseek-v4-flash").hf_config)
    v4["compress_ratios"] = [0, 4]
    with pytest.raises(ValueError, match="compress_ratios"):
        moe.from_hf_config(v4)


def test_unknown_extra_keys_are_fine():
    cfg = _v3_config()
    cfg["some_future_field"] = {"anything": 1}
    assert moe.from_hf_config(cfg).total_params == moe.get("deepseek-v3").total_params


def test_text_config_nesting():
    cfg = {"architectures": ["MixtralForCausalLM"], "text_config": dict(moe.get("mixtral-8x7b").hf_config)}
    assert moe.from_hf_config(cfg).total_params == moe.get("mixtral-8x7b").total_params


def test_layer_structure():
    v3 = moe.get("deepseek-v3")
    assert (v3.num_dense_layers, v3.num_moe_layers, v3.num_mtp_modules) == (3, 58, 1)
    flash = moe.get("deepseek-v4-flash")
    assert flash.attention.kind == "csa" and flash.num_dense_layers == 0
    assert flash.attention.compress_ratios[:4] == (0, 0, 4, 128)
    oss = moe.get("gpt-oss-120b")
    assert [oss.attention.window(i) for i in range(4)] == [128, None, 128, None]
    with pytest.raises(ValueError, match="layer must be an integer from 0 to 61"):
        v3.is_moe_layer(62)  # 61 main layers + 1 MTP module


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "fp6"}, "unknown KV-cache dtype 'fp6'"),
        ({"context_len": 0}, "context_len must be a positive integer"),
        ({"context_len": -5}, "context_len must be a positive integer"),
        ({"context_len": math.nan}, "context_len must be a positive integer"),
    ],
)
def test_bad_accounting_arguments(kwargs, match):
    m = moe.get("deepseek-v3")
    with pytest.raises(ValueError, match=match):
        m.kv_cache_bytes_per_token(**kwargs)


def test_bad_recipe_and_seq_len():
    m = moe.get("deepseek-v3")
    with pytest.raises(ValueError, match="unknown precision recipe 'int3'; allowed: bf16, fp8, fp4_experts"):
        m.memory_bytes("int3")
    with pytest.raises(ValueError, match="seq_len must be a positive integer"):
        m.training_flops_per_token(seq_len=0)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (
            {"scoring_func": "relu"},
            r"'scoring_func' must be one of 'softmax', 'sigmoid', 'sqrtsoftplus'; got 'relu'",
        ),
        ({"scoring_func": 1}, "'scoring_func' must be a string"),
        ({"topk_method": "xxx"}, r"'topk_method' must be one of 'greedy', .*'noaux_tc'; got 'xxx'"),
        (
            {"topk_method": "group_limited_greedy", "n_group": 7},
            r"n_group=7 but n_routed_experts=64; n_group must divide",
        ),
        ({"n_group": 0}, "'n_group' must be a positive integer"),
        (
            {"topk_method": "group_limited_greedy", "n_group": 2, "topk_group": 5},
            r"topk_group=5 but n_group=2; topk_group .* must be from 1 to n_group",
        ),
        (
            {"topk_method": "group_limited_greedy", "n_group": 16, "topk_group": 1},
            r"keeps topk_group=1 of n_group=16 groups, 4 experts, fewer than num_experts_per_tok=6",
        ),
        ({"topk_group": 0}, "'topk_group' must be a positive integer"),
        ({"topk_group": -1}, "'topk_group' must be a positive integer"),
    ],
)
def test_bad_routing_fields_are_refused(changes, match):
    cfg = dict(moe.get("deepseek-v2-lite").hf_config)
    cfg.update(changes)
    with pytest.raises(ValueError, match=match):
        moe.from_hf_config(cfg)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"scoring_func": "relu"}, "'scoring_func' must be one of"),
        ({"topk_method": "xxx"}, "'topk_method' must be one of"),
    ],
)
def test_bad_v4_routing_fields_are_refused(changes, match):
    cfg = dict(moe.get("deepseek-v4-flash").hf_config)
    cfg.update(changes)
    with pytest.raises(ValueError, match=match):
        moe.from_hf_config(cfg)


@pytest.mark.parametrize("name", moe.names())
def test_catalog_routing_fields_are_accepted(name):
    m = moe.get(name)
    assert m.scoring_func in ("softmax", "sigmoid", "sqrtsoftplus")
    assert m.num_routed_experts % m.n_group == 0 and 1 <= m.topk_group <= m.n_group
    # Valid group settings still load (V2: 160 experts in 8 groups, 3 kept).
    if name == "deepseek-v2":
        assert (m.n_group, m.topk_group) == (8, 3)


@pytest.mark.parametrize("causal", ["no", "yes", 1, 0, None])
def test_causal_must_be_a_bool(causal):
    m = moe.get("deepseek-v3")
    for fn in (m.attention_flops_per_token, m.forward_flops_per_token, m.training_flops_per_token):
        with pytest.raises(ValueError, match="causal must be True or False"):
            fn(128, causal=causal)
