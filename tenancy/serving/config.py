"""Configuration of one serving benchmark: engine, model, KV cache, workload and SLOs.

One pydantic model so that a YAML file, CLI options and a harness process all describe a run
the same way (and so that a bad value is one readable error, not a traceback deep in the engine).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkloadConfig(_Strict):
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


class SLOs(_Strict):
    """Per-request service-level objectives; a request counts for goodput if it meets all given."""

    ttft_ms: Optional[float] = Field(None, gt=0)
    tpot_ms: Optional[float] = Field(None, gt=0)
    e2e_ms: Optional[float] = Field(None, gt=0)


class ServingConfig(_Strict):
    """Every field is documented in the README's serving section."""

    engine: Literal["iteration", "request", "hf"] = "iteration"
    model: str = "llama-3.2-1b"
    size: Literal["full", "tiny"] = "tiny"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    weights: str = "random"
    attention_backend: Literal["auto", "reference", "batched", "flashinfer"] = "auto"
    cuda_graphs: bool = Field(True, description="decode iterations replay CUDA graphs (CUDA only)")
    pinned_staging: bool = Field(True, description="host->device copies via pinned memory (CUDA only)")
    max_batch_size: int = Field(64, ge=1)
    max_tokens_per_iteration: int = Field(2048, ge=1)
    chunked_prefill: bool = Field(False, description="split prompts to fit the token budget (Orca: no)")
    block_size: int = Field(16, ge=1)
    num_blocks: Optional[int] = Field(None, ge=1, description="KV pool size; default from the budget")
    kv_cache_gb: Optional[float] = Field(None, gt=0, description="KV pool size in GiB")
    kv_memory_fraction: float = Field(0.5, gt=0, le=1, description="of the tenant's memory budget after weights")
    kv_policy: Literal["paged", "reserve"] = "paged"
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, description="0: off")
    ignore_eos: bool = True
    save_tokens: bool = Field(False, description="requests.parquet gets each request's output token ids")
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    slos: SLOs = Field(default_factory=SLOs)
    seed: int = 0

    @model_validator(mode="after")
    def _known_decoder(self):
        from tenancy import models

        spec = models.get(self.model)  # raises UnknownModel (a ValueError) with the known names
        if spec.kind != "decoder":
            raise ValueError(f"{self.model} is an encoder; serving needs a decoder")
        if self.max_tokens_per_iteration < self.max_batch_size:
            raise ValueError(f"max_tokens_per_iteration ({self.max_tokens_per_iteration}) must cover "
                             f"max_batch_size ({self.max_batch_size}): else running decodes would stall")
        return self

    @classmethod
    def from_yaml(cls, path: Union[str, Path], **overrides) -> "ServingConfig":
        import yaml

        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        data = data.get("serving", data)  # allow a `serving:` section in a larger scenario file
        for key, value in overrides.items():
            target = data
            *parents, leaf = key.split(".")
            for p in parents:
                target = target.setdefault(p, {})
            target[leaf] = value
        return cls.model_validate(data)
