"""The models a tenant can name: the five of the study's zoo, or any Hugging Face model folder.

Zoo configs live in code because weights cannot be downloaded (and Llama is gated): random
weights built from these configs have the real FLOPs and bytes. `size="tiny"` keeps the family
and architecture but shrinks every dimension so the same code paths run on a CPU in seconds.
Any other name is a local folder holding config.json, or a model id already in the local
Hugging Face cache (resolved offline, never downloaded); its kind, positions and shapes come
from that config (hf_spec.py).
"""
from __future__ import annotations

from pathlib import Path

from tenancy.models import param_cache
from tenancy.models.hf_spec import resolve
from tenancy.models.spec import Kind, ModelSpec, Size, UnknownModel

__all__ = ["ZOO", "Kind", "ModelSpec", "Size", "UnknownModel", "build", "count_params", "get", "random_input_ids",
           "weights_problem"]

_TINY_ENCODER = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=1024
)
_TINY_LLAMA = dict(
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=16, intermediate_size=128, vocab_size=1024,
)

ZOO: dict[str, ModelSpec] = {
    "bert-base": ModelSpec(
        name="bert-base", kind="encoder", family="bert", hub_id="google-bert/bert-base-uncased",
        config=dict(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            vocab_size=30522, max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu",
        ),
        tiny=_TINY_ENCODER,
    ),
    "deberta-v3-base": ModelSpec(
        name="deberta-v3-base", kind="encoder", family="deberta-v2", hub_id="microsoft/deberta-v3-base",
        config=dict(
            hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            vocab_size=128100, max_position_embeddings=512, type_vocab_size=0, hidden_act="gelu",
            relative_attention=True, position_buckets=256, pos_att_type=["p2c", "c2p"],
            share_att_key=True, norm_rel_ebd="layer_norm", position_biased_input=False,
            max_relative_positions=-1, layer_norm_eps=1e-7,
        ),
        tiny={**_TINY_ENCODER, "position_buckets": 32},
    ),
    "distilgpt2": ModelSpec(
        name="distilgpt2", kind="decoder", family="gpt2", hub_id="distilbert/distilgpt2",
        config=dict(n_embd=768, n_layer=6, n_head=12, n_positions=1024, vocab_size=50257),
        tiny=dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1024, bos_token_id=1, eos_token_id=2),
    ),
    "llama-3.2-1b": ModelSpec(
        name="llama-3.2-1b", kind="decoder", family="llama", hub_id="meta-llama/Llama-3.2-1B",
        config=dict(
            hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
            head_dim=64, intermediate_size=8192, vocab_size=128256, max_position_embeddings=131072,
            rope_theta=500000.0, rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=True,
            rope_scaling=dict(
                rope_type="llama3", factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                original_max_position_embeddings=8192,
            ),
            bos_token_id=128000, eos_token_id=128001,
        ),
        tiny={**_TINY_LLAMA, "bos_token_id": 1, "eos_token_id": 2},
    ),
    "mistral-7b": ModelSpec(
        name="mistral-7b", kind="decoder", family="mistral", hub_id="mistralai/Mistral-7B-v0.1",
        config=dict(
            hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
            head_dim=128, intermediate_size=14336, vocab_size=32000, max_position_embeddings=32768,
            rope_theta=10000.0, rms_norm_eps=1e-5, sliding_window=4096, hidden_act="silu",
            tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        ),
        tiny={**_TINY_LLAMA, "bos_token_id": 1, "eos_token_id": 2},
    ),
}

DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4}


def weights_problem(weights: str, spec: ModelSpec | None = None) -> str | None:
    """Why `from_pretrained(weights)` cannot work here, or None: weights are a local directory, or a
    model id already in the local Hugging Face cache (nothing can be downloaded). `pretrained` is
    the model's own weights: a folder model's folder, a zoo model's hub id."""
    if weights == "random":
        return None
    if weights == "pretrained":
        if spec is None:
            return "pretrained names the model's own weights; no model given"
        weights = spec.path or spec.hub_id
    path = Path(weights).expanduser()
    if path.exists():
        return None if path.is_dir() else f"{weights!r} is a file; give the directory that holds config.json"
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(weights, "config.json")
    except ValueError:  # not even a valid model id (HFValidationError is a ValueError)
        cached = None
    if isinstance(cached, str):
        return None
    return f"{weights!r}: no such local directory, and no model of that id in the local Hugging Face cache"


def get(name: str) -> ModelSpec:
    """The zoo model, else the folder or cached model id of that name (hf_spec.resolve)."""
    if name in ZOO:
        return ZOO[name]
    return resolve(name, list(ZOO))


def _auto_name(kind: Kind) -> str:
    return "AutoModelForCausalLM" if kind == "decoder" else "AutoModel"


def _auto_class(kind: Kind):
    import transformers

    return getattr(transformers, _auto_name(kind))


def build(name: str, size: Size = "full", dtype: str = "float32", device: str = "cpu",
          weights: str = "random", seed: int = 0):
    """Build a model in eval mode on `device`.

    Random weights are drawn directly on the target device (fast even for 7B on a GPU) from a
    fixed seed; any other `weights` value is a local path or a model id in the local HF cache.
    """
    import torch

    spec = get(name)
    cls = _auto_class(spec.kind)
    torch_dtype = getattr(torch, dtype)
    if weights == "random":
        torch.manual_seed(seed)
        with torch.device(device):
            model = cls.from_config(spec.make_config(size), dtype=torch_dtype)
    else:
        source = (spec.path or spec.hub_id) if weights == "pretrained" else weights
        model = cls.from_pretrained(source, dtype=torch_dtype, local_files_only=True).to(device)
    return model.eval()


def count_params(name: str, size: Size = "full") -> int:
    """Parameters of the model, counted on the meta device (no memory is allocated) once per
    config and transformers version, then read from the user's cache (param_cache.py)."""
    spec = get(name)
    config = spec.make_config(size)
    k = param_cache.key(_auto_name(spec.kind), config)
    n = param_cache.get(k)
    if n is None:
        import torch

        with torch.device("meta"):
            model = _auto_class(spec.kind).from_config(config)
        n = sum(p.numel() for p in model.parameters())
        param_cache.put(k, n)
    return n


def random_input_ids(vocab_size: int, batch: int, seq: int, seed: int = 0, device: str = "cpu"):
    """Random token ids (never zeros: zeros hide bugs and can run faster than real data)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (batch, seq), generator=gen)
    return ids.to(device)
