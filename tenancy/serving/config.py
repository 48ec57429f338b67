"""Configuration of one serving benchmark: engine, KV cache, workload and SLOs, and the model.

`EngineConfig` is everything but the model: a scenario's `serving:` block (`ServingBlock`, whose
tenant names the model) and, with the model fields added, `ServingConfig`, what `tenancy serve`
reads and what its command-line options are derived from. One set of fields, defaults and help
texts for both halves of the tool.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from tenancy.core.validation import Strict

Length = Union[int, tuple[int, int]]  # fixed, or uniform [lo, hi] inclusive


def parse_length(value: Union[str, int, list, tuple]) -> Length:
    """'128' -> 128, '32-512' or [32, 512] -> (32, 512); anything else is a ValueError, which
    pydantic reports with the field's location (a TypeError would escape validation)."""
    try:
        if isinstance(value, (list, tuple)):
            lo, hi = (int(v) for v in value)
            return (lo, hi)
        if isinstance(value, str) and "-" in value:
            lo, hi = value.split("-", 1)
            return (int(lo), int(hi))
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"a length is N, 'LO-HI' or [LO, HI], not {value!r}") from None


class WorkloadConfig(Strict):
    """When requests arrive and how long they are. Seeded: same config, same requests."""

    arrival: Literal["poisson", "gamma", "closed", "all_at_once", "sinusoidal"] = "poisson"
    rate: float = Field(10.0, gt=0, description="mean arrivals per second (open loop)")
    burstiness: float = Field(1.0, gt=0, description="gamma shape; 1 = Poisson, <1 = burstier")
    concurrency: int = Field(8, ge=1, description="requests in flight (closed loop)")
    amplitude: float = Field(0.5, ge=0, le=1, description="sinusoidal: rate*(1+a*sin(2πt/period))")
    period_s: float = Field(10.0, gt=0)
    num_requests: int = Field(64, ge=1)
    duration_s: Optional[float] = Field(None, gt=0, description="open loop: arrivals in [0, d) instead of num_requests")
    input_len: Length = (32, 512)  # Orca's U[32, 512]
    output_len: Length = (1, 128)  # Orca's U[1, 128]
    trace: Optional[Path] = Field(None, description="JSONL with arrival_s, input_len, output_len per line")
    seed: int = 0

    @field_validator("input_len", "output_len", mode="before")
    @classmethod
    def _length(cls, v):
        n = parse_length(v)
        lo, hi = (n, n) if isinstance(n, int) else n
        if lo < 1 or hi < lo:
            raise ValueError(f"bad length {v!r}: need 1 <= lo <= hi")
        return n


class SLOs(Strict):
    """Per-request service-level objectives; a request counts for goodput if it meets all given."""

    ttft_ms: Optional[float] = Field(None, gt=0)
    tpot_ms: Optional[float] = Field(None, gt=0)
    e2e_ms: Optional[float] = Field(None, gt=0)


class EngineConfig(Strict):
    """How the engine serves, and the load it serves (README: serving config fields)."""

    engine: Literal["iteration", "request", "hf"] = Field(
        "iteration", description="iteration (Orca), request (in-engine static batching), hf (transformers generate)")
    attention_backend: Literal["auto", "reference", "batched", "flashinfer"] = Field(
        "auto", description="auto: flashinfer on a GPU where installed, else batched")
    cuda_graphs: bool = Field(True, description="decode iterations replay CUDA graphs (CUDA only)")
    pinned_staging: bool = Field(True, description="host->device copies via pinned memory (CUDA only)")
    async_scheduling: bool = Field(
        True, description="schedule the next iteration while the GPU runs this one; tokens read one "
        "iteration late, one host sync each (CUDA, iteration engine only)")
    max_batch_size: int = Field(64, ge=1, description="running requests at most")
    max_tokens_per_iteration: int = Field(2048, ge=1, description="token budget of one iteration")
    chunked_prefill: bool = Field(False, description="split prompts to fit the token budget (Orca: no)")
    block_size: int = Field(16, ge=1, description="tokens per KV block")
    num_blocks: Optional[int] = Field(None, ge=1, description="KV pool size in blocks; default from the budget")
    kv_cache_gb: Optional[float] = Field(None, gt=0, description="KV pool size in GiB")
    kv_memory_fraction: float = Field(0.5, gt=0, le=1, description="of the tenant's memory budget after weights")
    kv_policy: Literal["paged", "reserve"] = Field(
        "paged", description="paged (allocate as tokens arrive, preempt) or reserve (Orca)")
    temperature: float = Field(0.0, ge=0, description="0: greedy")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="0: off")
    ignore_eos: bool = Field(True, description="run every request to its output length")
    save_tokens: bool = Field(False, description="requests.parquet gets each request's output token ids")
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    slos: SLOs = Field(default_factory=SLOs)

    @model_validator(mode="after")
    def _budget_covers_batch(self):
        if self.max_tokens_per_iteration < self.max_batch_size:
            raise ValueError(f"max_tokens_per_iteration ({self.max_tokens_per_iteration}) must cover "
                             f"max_batch_size ({self.max_batch_size}): else running decodes would stall")
        return self


class HTTPConfig(Strict):
    """`tenancy serve --http`: where the OpenAI-compatible server listens and what it serves."""

    host: str = Field("127.0.0.1", description="--http: address to listen on")
    port: int = Field(8000, ge=0, lt=65536, description="--http: port (0: any free one, printed)")
    served_model_name: Optional[str] = Field(None, description="--http: the model's name in the API; "
                                             "default the weights path, else the model")
    max_model_len: Optional[int] = Field(None, ge=2, description="--http: prompt + max_tokens at most; "
                                         "default min(the model's positions, 4096)")


MODEL_FIELDS = ("model", "size", "dtype", "weights", "seed")
# Architectures (transformers model_type) our engine has kernels for: serving/models FAMILIES.
SERVED_FAMILIES = ("gpt2", "llama", "mistral", "qwen2", "qwen3")


def model_problem(model: str, size: str, engine: str) -> Optional[str]:
    """Why this model cannot be served, or None: an encoder, a folder model asked for `size: tiny`,
    an architecture our engine (iteration or request) has no kernels for; `hf` runs any decoder.
    An unknown name raises UnknownModel (a ValueError) saying what was looked for."""
    from tenancy.models import zoo

    spec = zoo.get(model)
    if spec.kind != "decoder":
        return f"{model} is an encoder; serving needs a decoder"
    if size == "tiny" and spec.path is not None:
        return f"size: tiny shrinks zoo models only; {model} is a model folder"
    if engine != "hf" and spec.family not in SERVED_FAMILIES:
        return (f"the serving engine has no kernels for architecture {spec.family!r} ({model}); "
                f"supported: {', '.join(SERVED_FAMILIES)} (or engine: hf, transformers' generate)")
    return None


class ServingBlock(EngineConfig):
    """A scenario tenant's `serving:` block: the model, its size, dtype and weights are the
    tenant's fields and the seed is the scenario's, so naming them here is a mistake, not an
    override that would be silently replaced."""

    @model_validator(mode="before")
    @classmethod
    def _model_is_the_tenants(cls, data):
        if isinstance(data, dict):
            for key in MODEL_FIELDS:
                if key in data:
                    owner = "the scenario's `seed`" if key == "seed" else f"the tenant's `{key}`"
                    raise ValueError(f"{key} does not belong in serving: it is {owner}")
        return data


class ServingConfig(EngineConfig):
    """A whole `tenancy serve` benchmark: the engine config plus the model it serves. Model
    defaults are the harness's: full size, float16 on a GPU and float32 on a CPU."""

    model: str = Field("llama-3.2-1b", description="a decoder: zoo name, model folder or cached id (tenancy models)")
    size: Literal["full", "tiny"] = Field("full", description="tiny: same architecture, 2 layers (CPU tests)")
    dtype: Optional[Literal["float32", "float16", "bfloat16"]] = Field(
        None, description="default float16 on a GPU, float32 on a CPU")
    weights: str = Field("random", description="random, pretrained (the model's own), or a local path / cached model id")
    seed: int = Field(0, ge=0, lt=2**32, description="weights and sampling")
    http: HTTPConfig = Field(default_factory=HTTPConfig)

    @field_validator("model")
    @classmethod
    def _known_decoder(cls, model: str) -> str:
        from tenancy.models import zoo

        if zoo.get(model).kind != "decoder":  # get raises UnknownModel (a ValueError) saying what it looked for
            raise ValueError(f"{model} is an encoder; serving needs a decoder")
        return model

    @model_validator(mode="after")
    def _servable(self) -> "ServingConfig":
        problem = model_problem(self.model, self.size, self.engine)
        if problem:
            raise ValueError(problem)
        return self

    def dtype_on(self, device: str) -> str:
        return self.dtype or ("float16" if device.startswith("cuda") else "float32")
