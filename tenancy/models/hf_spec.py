"""A model named by folder or Hugging Face cache id, as a ModelSpec derived from its config.json.

Why: a tenant may measure any model transformers loads, not only the zoo's five. Resolution is
offline (`snapshot_download(local_files_only=True)`): this tool never downloads. The kind
follows what transformers would load it with: a causal-LM architecture (or `is_decoder`, or a
model type only the causal-LM auto class knows) is a decoder run by AutoModelForCausalLM,
anything else an encoder run by AutoModel.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from tenancy.models.spec import ModelSpec, UnknownModel

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def folder_of(name: str) -> Path | None:
    """The directory a name points at: a local folder with config.json, else the snapshot of a
    model id in the local Hugging Face cache; None when it is neither."""
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        return path.resolve()
    if path.exists() or name.count("/") > 1:
        return None
    from huggingface_hub import snapshot_download

    try:
        snap = Path(snapshot_download(repo_id=name, local_files_only=True))
    except (ValueError, OSError, ConnectionError):  # invalid id (HFValidationError), not cached (LocalEntryNotFound)
        return None
    except Exception as err:  # noqa: BLE001  huggingface_hub's errors differ across versions
        if type(err).__name__.endswith(("NotFoundError", "ValidationError")):
            return None
        raise
    return snap if (snap / "config.json").is_file() else None


def resolve(name: str, zoo: list[str]) -> ModelSpec:
    folder = folder_of(name)
    if folder is None:
        from huggingface_hub.constants import HF_HUB_CACHE

        raise UnknownModel(f"unknown model {name!r}: not a zoo model (known: {', '.join(zoo)}), not a folder holding "
                           f"config.json, not a model id in the local Hugging Face cache ({HF_HUB_CACHE})")
    cfg = folder / "config.json"
    return _spec(name, str(folder), cfg.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _spec(name: str, folder: str, mtime_ns: int) -> ModelSpec:
    """Cached per (folder, config.json mtime): validation asks for the same model several times."""
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (ValueError, OSError, KeyError) as err:
        raise UnknownModel(f"{name!r}: transformers cannot read {folder}/config.json: "
                           f"{' '.join(str(err).split())[:200]}") from None
    kind = kind_of(cfg, name)
    data = cfg.to_dict()
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):  # attribute_map aliases, as attributes
        value = getattr(cfg, key, None)
        if isinstance(value, int):
            data[key] = value
    return ModelSpec(name=name, kind=kind, family=cfg.model_type, config=data, tiny={}, hub_id=name, path=folder)


def kind_of(cfg, name: str) -> str:
    """encoder or decoder, as transformers' auto classes see the config; UnknownModel when
    neither AutoModel nor AutoModelForCausalLM can build it."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )

    mt = cfg.model_type
    if getattr(cfg, "is_encoder_decoder", False):
        raise UnknownModel(f"{name!r} is an encoder-decoder model ({mt}); tenants run encoders or decoders")
    archs = getattr(cfg, "architectures", None) or []
    causal = mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if causal and (getattr(cfg, "is_decoder", False) or any(a.endswith(CAUSAL_SUFFIXES) for a in archs)
                   or mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES):
        return "decoder"
    if mt in MODEL_MAPPING_NAMES:
        return "encoder"
    raise UnknownModel(f"{name!r}: model type {mt!r} is one neither AutoModel nor AutoModelForCausalLM builds")
