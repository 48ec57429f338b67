"""One strict base model, one YAML loader and one error formatter for every config tenancy reads
(scenarios, serving configs, study files), so that a mistake reads the same whatever the command."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from tenancy.core.errors import TenancyError

MAX_DEPTH = 64  # a config is a few levels deep; deeper is a broken or hostile file


class Closed(BaseModel):
    """Unknown fields are errors (the base of tagged-union members, whose tag field pydantic lets no
    before-validator touch)."""

    model_config = ConfigDict(extra="forbid")


class Strict(Closed):
    """Unknown fields are errors; YAML's true/false are not the numbers 1/0."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info) -> Any:
        """`copies: true` is a mistake, not one copy."""
        return no_bool_as_number(value, cls.model_fields[info.field_name].annotation)


def no_bool_as_number(value: Any, annotation: Any) -> Any:
    """`copies: true` is a mistake, not one copy."""
    annotation = str(annotation)
    if isinstance(value, bool) and ("int" in annotation or "float" in annotation) and "bool" not in annotation:
        raise ValueError("must be a number, not true/false")
    return value


def format_validation_error(source: str, err: ValidationError) -> str:
    """`source: dotted.location: message (+N more)`: the first problem, on one line."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = " ".join(first["msg"].removeprefix("Value error, ").split())
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "union_tag_invalid":  # a tagged union (sharing: {mode: ...}) with a bad tag
        ctx = first.get("ctx") or {}
        msg = f"unknown {ctx.get('discriminator', 'tag').strip(chr(39))} {ctx.get('tag')!r}; one of {ctx.get('expected_tags')}"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{source}: {loc}: {msg}{more}"


def validate(model: type[BaseModel], data: object, source: str) -> Any:
    """`model.model_validate(data)`, with every failure a one-line TenancyError naming `source`."""
    if not isinstance(data, dict):
        raise TenancyError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise TenancyError(format_validation_error(source, err)) from None


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
    """A config file's data; every way it can be unreadable is one line naming the file."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise TenancyError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise TenancyError(f"{path}: not a UTF-8 text file (byte {err.start}); configs are YAML text") from None
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
