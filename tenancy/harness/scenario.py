"""The scenario file: what to run, validated with pydantic before anything starts."""
from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from tenancy.autoscale.config import AutoscaleConfig, check_scenario
from tenancy.core.errors import TenancyError
from tenancy.core.validation import Closed, Strict, no_bool_as_number, validate
from tenancy.endpoint.config import EndpointConfig
from tenancy.models import zoo
from tenancy.serving.config import ServingBlock, model_problem

DType = Literal["float16", "bfloat16", "float32"]


class TenantMps(Strict):
    """Per-client MPS limits; applied through the environment before the CUDA context exists."""

    active_thread_percentage: Optional[int] = Field(None, ge=1, le=100)
    pinned_mem_limit: Optional[str] = Field(None, pattern=r"^\d+[KMG]?$", description="e.g. 2G")


class Exclusive(Closed):
    """Each tenant alone (the solo phase only): baselines, the A/A control's reference."""

    mode: Literal["exclusive"] = "exclusive"


class Timeslice(Closed):
    """Separate processes on one device, which the driver time-slices."""

    mode: Literal["timeslice"] = "timeslice"


class Streams(Closed):
    """Threads of one process, a CUDA stream each."""

    mode: Literal["streams"] = "streams"


class Mps(Closed):
    """Separate processes as clients of our own MPS daemon."""

    mode: Literal["mps"] = "mps"
    default_thread_percentage: Optional[int] = Field(None, ge=1, le=100, description="the daemon's default SM share")
    exclusive_process: bool = Field(False, description="set EXCLUSIVE_PROCESS for the shared phase and restore it "
                                    "after (root, a card you own)")

    @field_validator("default_thread_percentage", mode="before")
    @classmethod
    def _number(cls, value):
        return no_bool_as_number(value, int)


Sharing = Annotated[Union[Exclusive, Timeslice, Mps, Streams], Field(discriminator="mode")]
_MOVED = {"mps_default_thread_percentage": "default_thread_percentage", "mps_exclusive_process": "exclusive_process"}


class Tenant(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    model: str
    task: Optional[Literal["forward", "generate", "serve", "endpoint"]] = None  # default: encoder forward, decoder generate
    batch: int = Field(8, gt=0)
    seq: int = Field(128, gt=0)
    dtype: Optional[DType] = None  # default: float16 on a GPU, float32 on a CPU
    copies: int = Field(1, gt=0)
    new_tokens: int = Field(32, gt=0, description="tokens generated per iteration (generate)")
    weights: str = "random"
    size: Literal["full", "tiny"] = "full"
    threads: Optional[int] = Field(None, gt=0, description="torch CPU threads for this tenant")
    mps: TenantMps = Field(default_factory=TenantMps)
    serving: Optional[ServingBlock] = Field(None, description="task serve: the serving engine's config")
    endpoint: Optional[EndpointConfig] = Field(None, description="task endpoint: the server to start and its load "
                                               "(`model` names what it serves: prompts use its vocabulary)")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        zoo.get(value)  # raises UnknownModel, a ValueError pydantic reports with its location
        return value

    @model_validator(mode="after")
    def _task_fits_model(self) -> "Tenant":
        spec = zoo.get(self.model)
        if self.task is None:
            self.task = "generate" if spec.kind == "decoder" else "forward"
        if self.task in ("generate", "serve", "endpoint") and spec.kind == "encoder":
            raise ValueError(f"task '{self.task}' needs a decoder; {self.model} is an encoder")
        if self.size == "tiny" and spec.path is not None:
            raise ValueError(f"size: tiny shrinks zoo models only; {self.model} is a model folder")
        tokens = self.seq + (self.new_tokens if self.task == "generate" else 0)
        if self.task not in ("serve", "endpoint") and tokens > spec.max_positions:
            what = f"seq {self.seq} + new_tokens {self.new_tokens}" if self.task == "generate" else f"seq {self.seq}"
            raise ValueError(f"{what} = {tokens} tokens, beyond {self.model}'s {spec.max_positions} positions")
        problem = zoo.weights_problem(self.weights, spec)
        if problem:
            raise ValueError(f"weights: {problem}")
        if self.task == "serve":
            if self.serving is None:
                self.serving = ServingBlock()
            problem = model_problem(self.model, self.size, self.serving.engine)
            if problem:
                raise ValueError(problem)
        elif self.serving is not None:
            raise ValueError("a serving block needs task: serve")
        if self.task == "endpoint" and self.endpoint is None:
            raise ValueError("task endpoint needs an endpoint block with the server's command")
        if self.task != "endpoint" and self.endpoint is not None:
            raise ValueError("an endpoint block needs task: endpoint")
        return self

    def config_key(self) -> str:
        return work_key(self.model_dump(mode="json"))


def work_key(tenant: dict) -> str:
    """Identity of a tenant's work, without name, copies and MPS limits: tenants with equal keys
    share a solo run, and the report counts them as the same work. Takes a stored tenant (a
    manifest's) as well as a validated one."""
    t = tenant
    parts = [t["model"], t.get("task"), f"b{t.get('batch')}", f"s{t.get('seq')}", t.get("dtype") or "auto",
             t.get("size", "full")]
    if t.get("task") == "generate":
        parts.append(f"t{t.get('new_tokens')}")
    if t.get("task") == "serve":
        blob = json.dumps(t.get("serving") or {}, sort_keys=True, default=str).encode()
        parts.append("serving-" + hashlib.sha1(blob).hexdigest()[:8])
    if t.get("task") == "endpoint":
        blob = json.dumps(t.get("endpoint") or {}, sort_keys=True, default=str).encode()
        parts.append("endpoint-" + hashlib.sha1(blob).hexdigest()[:8])
    if t.get("weights", "random") != "random":
        parts.append(t["weights"])
    return "/".join(str(p) for p in parts)


class Scenario(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.=+-]+$")  # = and + : matrix run names
    description: str = ""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    sharing: Sharing = Field(default_factory=Timeslice, description="a mode, or {mode: mps, ...} with its settings")
    iterations: int = Field(100, gt=0, le=10**7)  # bounds: a typo of 2**70 is refused, not run for ages
    warmup: int = Field(10, ge=0, le=10**7)
    min_duration_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    repeats: int = Field(3, gt=0, le=1000, description="solo and shared launches per run; intervals are across repeats "
                         "from 3 on")
    seed: int = Field(0, ge=0, lt=2**32, description="weights and inputs are drawn from it")
    monitor_interval_ms: int = Field(50, ge=0, description="NVML sampling period on a GPU; 0 turns the monitor off")
    tenants: list[Tenant] = Field(min_length=1)
    autoscale: Optional[AutoscaleConfig] = Field(None, description="`tenancy scale`: tenancy/autoscale/config.py")

    @model_validator(mode="after")
    def _endpoints_are_processes(self) -> "Scenario":
        if self.mode == "streams" and any(t.task == "endpoint" for t in self.tenants):
            raise ValueError("endpoint tenants are server processes; streams mode runs tenants as threads of one "
                             "process: use timeslice or mps")
        return self

    @model_validator(mode="after")
    def _autoscale(self) -> "Scenario":
        if self.autoscale is not None:
            check_scenario(self)
        return self

    @model_validator(mode="before")
    @classmethod
    def _sharing_block(cls, data):
        """`sharing: mps` is short for `sharing: {mode: mps}`; the MPS settings that were top-level
        fields before schema 3 get a one-line way to update the file."""
        if isinstance(data, dict):
            for old, new in _MOVED.items():
                if old in data:
                    raise ValueError(f"{old} moved into the sharing block: write "
                                     f"`sharing: {{mode: mps, {new}: {str(data[old]).lower()}}}`")
            if isinstance(data.get("sharing"), str):
                data = {**data, "sharing": {"mode": data["sharing"]}}
        return data

    @property
    def mode(self) -> str:
        return self.sharing.mode

    @field_validator("tenants")
    @classmethod
    def _unique_names(cls, tenants: list[Tenant]) -> list[Tenant]:
        names = [t.name for t in tenants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"tenant names must be unique; repeated: {', '.join(dup)}")
        return tenants

    def instances(self) -> list[tuple[Tenant, int]]:
        """Every process of the shared phase: (tenant, copy index)."""
        return [(t, c) for t in self.tenants for c in range(t.copies)]

    def distinct(self) -> list[Tenant]:
        """One tenant per distinct piece of work, for the solo phase."""
        seen: dict[str, Tenant] = {}
        for t in self.tenants:
            seen.setdefault(t.config_key(), t)
        return list(seen.values())


def stored_scenario(data: dict) -> dict:
    """A scenario as an older manifest recorded it, in today's form (`sharing` a block with the
    MPS settings inside), so that resuming a study or reporting on it compares like with like."""
    data = dict(data)
    sharing = data.get("sharing")
    if isinstance(sharing, str):
        block = {"mode": sharing}
        if sharing == "mps":
            block.update({new: data[old] for old, new in _MOVED.items() if old in data})
        data["sharing"] = block
    for old in _MOVED:
        data.pop(old, None)
    return data


def parse_scenario(data: object, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise TenancyError(f"{source}: a scenario must be a mapping of fields, got {type(data).__name__}")
    return validate(Scenario, data, source)
