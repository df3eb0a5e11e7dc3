"""Models and exact accounting for Mixture-of-Experts LLMs.

``moe.get(name)`` returns a built-in model from ``moe/catalog/<name>.json`` (Hugging Face
``config.json`` files with a ``_source`` note); ``moe.from_hf_config(path_or_dict)`` reads any
supported config; ``moe.names()`` lists the catalog. Nothing is read at import time.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from moe.accounting import FlopsBreakdown, MemoryBreakdown
from moe.config import SUPPORTED_MODEL_TYPES, MoEModel, from_hf_config
from moe.spec import AttentionSpec, ModelSpec

__all__ = [
    "AttentionSpec",
    "FlopsBreakdown",
    "MemoryBreakdown",
    "ModelSpec",
    "MoEModel",
    "SUPPORTED_MODEL_TYPES",
    "from_hf_config",
    "get",
    "names",
]


def _catalog_dir() -> Any:
    return resources.files("moe") / "catalog"


@lru_cache(maxsize=1)
def names() -> list[str]:
    """Names of the built-in models (the catalog's file names without ``.json``)."""
    found = [p.name[: -len(".json")] for p in _catalog_dir().iterdir() if p.name.endswith(".json")]
    return sorted(found)


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


_ALIASES = {
    "v3": "deepseek-v3",
    "deepseek-v3-671b": "deepseek-v3",
    "v2": "deepseek-v2",
    "v2-lite": "deepseek-v2-lite",
    "v3.2": "deepseek-v3.2",
    "deepseek-v32": "deepseek-v3.2",
    "v4-flash": "deepseek-v4-flash",
    "v4-pro": "deepseek-v4-pro",
    "mixtral-8x7b-v0.1": "mixtral-8x7b",
    "mixtral-8x22b-v0.1": "mixtral-8x22b",
    # the instruction-tuned Llama 4 checkpoints share their base models' architecture (model card)
    "llama-4-scout-17b-16e-instruct": "llama-4-scout-17b-16e",
    "llama-4-maverick-17b-128e-instruct": "llama-4-maverick-17b-128e",
}


@cache
def _load(canonical: str) -> MoEModel:
    path = _catalog_dir() / f"{canonical}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    return from_hf_config(raw, name=canonical)


def get(name_or_model: str | MoEModel) -> MoEModel:
    """A built-in model by name (case-insensitive; a few aliases such as "v3"), or the model itself.

    Unknown names raise ValueError listing the known ones.
    """
    if isinstance(name_or_model, MoEModel):
        return name_or_model
    if not isinstance(name_or_model, str) or not name_or_model.strip():
        raise ValueError(
            f"model must be a catalog name or an MoEModel; got {name_or_model!r}. Known: "
            f"{', '.join(names())}."
        )
    key = _normalise(name_or_model)
    key = _ALIASES.get(key, key)
    if (
        key.startswith("deepseek-ai/")
        or key.startswith("mistralai/")
        or key.startswith("qwen/")
        or key.startswith("openai/")
        or key.startswith("meta-llama/")
    ):
        key = key.split("/", 1)[1]
        key = _ALIASES.get(key, key)
    if key not in names():
        raise ValueError(f"unknown model {name_or_model!r}; known models: {', '.join(names())}.")
    return _load(key)
