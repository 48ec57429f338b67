"""The scenario file: what to run, validated with pydantic before anything starts."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tenancy import models
from tenancy.errors import TenancyError

Sharing = Literal["exclusive", "timeslice", "mps", "streams"]
DType = Literal["float16", "bfloat16", "float32"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info) -> Any:
        """YAML's true/false are not 1/0: `copies: true` is a mistake, not one copy."""
        annotation = str(cls.model_fields[info.field_name].annotation)
        if isinstance(value, bool) and ("int" in annotation or "float" in annotation):
            raise ValueError("must be a number, not true/false")
        return value


class TenantMps(_Strict):
    """Per-client MPS limits; applied through the environment before the CUDA context exists."""

    active_thread_percentage: Optional[int] = Field(None, ge=1, le=100)
    pinned_mem_limit: Optional[str] = Field(None, pattern=r"^\d+[KMG]?$", description="e.g. 2G")


class Tenant(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    model: str
    task: Optional[Literal["forward", "generate", "serve"]] = None  # default: encoder forward, decoder generate
    batch: int = Field(8, gt=0)
    seq: int = Field(128, gt=0)
    dtype: Optional[DType] = None  # default: float16 on a GPU, float32 on a CPU
    copies: int = Field(1, gt=0)
    new_tokens: int = Field(32, gt=0, description="tokens generated per iteration (generate)")
    weights: str = "random"
    size: Literal["full", "tiny"] = "full"
    threads: Optional[int] = Field(None, gt=0, description="torch CPU threads for this tenant")
    mps: TenantMps = Field(default_factory=TenantMps)
    serving: Optional[dict[str, Any]] = Field(
        None, description="task serve: the serving engine's config (tenancy/serving/config.py)")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        models.get(value)  # raises UnknownModel, a ValueError pydantic reports with its location
        return value

    @model_validator(mode="after")
    def _task_fits_model(self) -> "Tenant":
        kind = models.get(self.model).kind
        if self.task is None:
            self.task = "generate" if kind == "decoder" else "forward"
        if self.task in ("generate", "serve") and kind == "encoder":
            raise ValueError(f"task '{self.task}' needs a decoder; {self.model} is an encoder")
        spec = models.get(self.model)
        tokens = self.seq + (self.new_tokens if self.task == "generate" else 0)
        if self.task != "serve" and tokens > spec.max_positions:
            what = f"seq {self.seq} + new_tokens {self.new_tokens}" if self.task == "generate" else f"seq {self.seq}"
            raise ValueError(f"{what} = {tokens} tokens, beyond {self.model}'s {spec.max_positions} positions")
        problem = models.weights_problem(self.weights)
        if problem:
            raise ValueError(f"weights: {problem}")
        if self.task == "serve":
            from tenancy.serving.tenant import config_for

            try:
                config_for(self)
            except ValidationError as err:
                raise ValueError(format_validation_error("serving", err).removeprefix("serving: ")
                                 .join(["serving.", ""])) from None
        elif self.serving is not None:
            raise ValueError("a serving block needs task: serve")
        return self

    def config_key(self) -> str:
        """Identity of the work, without name and copies: tenants with equal keys share a solo run."""
        parts = [self.model, self.task, f"b{self.batch}", f"s{self.seq}", self.dtype or "auto", self.size]
        if self.task == "generate":
            parts.append(f"t{self.new_tokens}")
        if self.task == "serve":
            import hashlib
            import json

            blob = json.dumps(self.serving or {}, sort_keys=True, default=str).encode()
            parts.append("serving-" + hashlib.sha1(blob).hexdigest()[:8])
        if self.weights != "random":
            parts.append(self.weights)
        return "/".join(parts)


class Scenario(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.=+-]+$")  # = and + : matrix run names
    description: str = ""
    device: Literal["auto", "cuda", "cpu"] = "auto"
    sharing: Sharing = "timeslice"
    iterations: int = Field(100, gt=0)
    warmup: int = Field(10, ge=0)
    min_duration_s: float = Field(0.0, ge=0, allow_inf_nan=False)
    repeats: int = Field(3, gt=0, description="solo and shared launches per run; intervals are across repeats "
                         "from 3 on")
    seed: int = Field(0, ge=0, lt=2**32, description="weights and inputs are drawn from it")
    mps_default_thread_percentage: Optional[int] = Field(None, ge=1, le=100)
    mps_exclusive_process: bool = Field(False, description="set EXCLUSIVE_PROCESS for the shared phase "
                                        "and restore it after (root, a card you own)")
    monitor_interval_ms: int = Field(50, ge=0, description="NVML sampling period on a GPU; 0 turns the monitor off")
    tenants: list[Tenant] = Field(min_length=1)
    autoscale: Optional[dict[str, Any]] = Field(None, description="`tenancy scale`: tenancy/autoscale/config.py")

    @model_validator(mode="after")
    def _autoscale(self) -> "Scenario":
        if self.autoscale is not None:  # the block's model lives with the autoscaler
            from tenancy.autoscale.config import check_scenario

            try:
                check_scenario(self)
            except ValidationError as err:
                raise ValueError(format_validation_error("autoscale", err)) from None
        return self

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


def format_validation_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def parse_scenario(data: object, source: str = "<scenario>") -> Scenario:
    if not isinstance(data, dict):
        raise TenancyError(f"{source}: a scenario must be a mapping of fields, got {type(data).__name__}")
    try:
        return Scenario.model_validate(data)
    except ValidationError as err:
        raise TenancyError(format_validation_error(source, err)) from None


MAX_DEPTH = 64  # a scenario is a few levels deep; deeper is a broken or hostile file


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool, type(None))):
                continue  # the base constructor reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _depth(data: object, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of parsed YAML, stopping at `limit` (no recursion: deep input is the threat)."""
    stack, deepest = [(data, 1)], 0
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack += [(c, d + 1) for c in children]
    return deepest


def read_yaml(path: str | Path) -> object:
    """A scenario file's data; every way it can be unreadable is one line naming the file."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise TenancyError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise TenancyError(f"{path}: not a UTF-8 text file (byte {err.start}); scenarios are YAML text") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise TenancyError(f"{path}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise TenancyError(f"{path}: malformed YAML: nested too deeply") from None
    if _depth(data) > MAX_DEPTH:
        raise TenancyError(f"{path}: malformed YAML: nested more than {MAX_DEPTH} levels deep")
    return data
