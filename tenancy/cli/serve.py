"""`tenancy serve`: one engine under one workload, from a config file and/or options.

The options are derived from `ServingConfig` (names, types, choices, help and defaults), so a new
config field is a new option with no table to keep. CONFIG is a serving config or a scenario with
one `task: serve` tenant. Writes a run directory (see results/README.md); Ctrl-C or SIGTERM writes
what arrived so far and exits 130; failed requests exit 1 with the first reason.
"""
from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel

from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, TenancyError
from tenancy.serving.config import ServingConfig

PREFIX = {"workload": "", "slos": "slo-", "http": ""}  # nested blocks: their option names' prefix


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, is a bool flag) for a field's annotation; lengths stay strings ('32-512')."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation is bool:
        return None, True
    if typing.get_origin(annotation) is typing.Literal:
        return click.Choice([str(a) for a in typing.get_args(annotation)]), False
    if annotation in (int, float):
        return annotation, False
    if annotation is Path:
        return click.Path(exists=True, dir_okay=False), False
    return str, False


def config_options(model: type[BaseModel] = ServingConfig, prefix: str = "", key: str = "") -> list[click.Option]:
    """One option per leaf field; `--max-batch-size`, `--rate` (workload), `--slo-ttft-ms` (slos).
    A nested name that a top-level field already has gets its block's name (`--workload-seed`)."""
    options = []
    top = set(ServingConfig.model_fields)
    for name, field in model.model_fields.items():
        dotted = f"{key}{name}"
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            options += config_options(sub, PREFIX[name], f"{dotted}.")
            continue
        flag = (prefix + name).replace("_", "-")
        if key and not prefix and name in top:
            flag = f"{key.rstrip('.')}-{flag}"
        ctype, is_bool = _click_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        shown = "" if default is None else f" [default: {str(default).lower() if is_bool else default}]"
        decls = [f"--{flag}/--no-{flag}" if is_bool else f"--{flag}", dotted.replace(".", "__")]
        options.append(click.Option(decls, type=ctype, default=None, help=(field.description or "") + shown))
    return options


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{'workload__rate': 5} -> {'workload': {'rate': 5}}, skipping options not given."""
    data: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        *parents, leaf = key.split("__")
        target = data
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    return data


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`; a block the file gives as something other than a mapping stays, so
    that validation names the file's mistake instead of an option silently replacing it."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and k in out:
            out[k] = _merge(out[k], v) if isinstance(out[k], dict) else out[k]
        else:
            out[k] = v
    return out


def load_config(path: Path | None, overrides: dict[str, Any]) -> tuple[ServingConfig, str | None]:
    """The config and the device the file asks for (a scenario's `device`), overrides applied."""
    from tenancy.core.validation import read_yaml, validate

    data: dict[str, Any] = {}
    device = None
    source = str(path) if path else "tenancy serve"
    if path is not None:
        raw = read_yaml(path)
        if isinstance(raw, dict) and "tenants" in raw:
            data, device = _from_scenario(path)
        elif isinstance(raw, dict) or raw is None:
            data = raw or {}
        else:
            raise TenancyError(f"{source}: expected a mapping of fields, got {type(raw).__name__}")
    return validate(ServingConfig, _merge(data, overrides), source), device


def _from_scenario(path: Path) -> tuple[dict[str, Any], str]:
    from tenancy.harness.matrix import load_single
    from tenancy.serving.tenant import config_for

    scenario = load_single(path)
    serving = [t for t in scenario.tenants if t.task == "serve"]
    if len(scenario.tenants) != 1 or not serving:
        raise TenancyError(f"{path}: tenancy serve runs one `task: serve` tenant; this scenario has "
                           f"{len(scenario.tenants)} tenant(s): run it with `tenancy run {path}`")
    return config_for(serving[0], scenario.seed).model_dump(mode="json"), scenario.device


def serve(config: Path | None, out: Path | None, device: str | None, http: bool, **options: Any) -> None:
    """Benchmark LLM serving (iteration-level engine or a request-level baseline) on one device,
    or with --http serve the engine as an OpenAI-compatible server."""
    from tenancy.core import results
    from tenancy.core.signals import shielded
    from tenancy.gpu.environment import resolve_device
    from tenancy.serving.api import build_engine, engine_info, run_serving, write_run
    from tenancy.serving.engine import ServeInterrupted
    from tenancy.serving.metrics import to_frame

    cfg, file_device = load_config(config, _nest(options))
    device = resolve_device(device or file_device or "auto")
    if http:
        from tenancy.serving.http.server import run_server

        return run_server(cfg, device)
    out = results.new_run_dir(out, f"serve-{cfg.engine}-{cfg.model}")
    engine = None
    try:
        engine = build_engine(cfg, device)
        click.echo(f"{cfg.engine} {cfg.model}/{cfg.size} on {device}: serving -> {out}", err=True)
        df = run_serving(cfg, device, engine=engine)
    except KeyboardInterrupt as stop:  # ServeInterrupted carries what arrived; before it, nothing had
        if engine is None:
            raise
        frame = stop.frame if isinstance(stop, ServeInterrupted) else to_frame([], 0, engine.name)
        with shielded():  # a second Ctrl-C must not lose the first one's requests
            write_run(out, cfg, frame, device, {"serving_engine": engine_info(engine)}, interrupted=True)
        click.echo(f"interrupted: {len(frame)} request(s) that had arrived are in {out}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except (ValueError, NotImplementedError, OSError) as e:  # e.g. a bad trace file, a missing weights path
        raise TenancyError(" ".join(str(e).split())[:300]) from None
    s = write_run(out, cfg, df, device, {"serving_engine": engine_info(engine)})
    click.echo(f"{cfg.engine} {cfg.model}/{cfg.size}: {s['completed']}/{s['num_requests']} requests, "
               f"{s['request_throughput']:.2f} req/s, {s['output_throughput']:.1f} tok/s, "
               f"TTFT p50 {s['p50_ttft_ms']:.1f} ms, E2E p50 {s['p50_e2e_ms']:.1f} ms p99 {s['p99_e2e_ms']:.1f} ms")
    click.echo(f"wrote {out}")
    failed = df[df["status"] != "finished"]
    if len(failed):  # the reason of each is in requests.parquet; the first one here
        first = failed.iloc[0]
        reason = first.get("error") or first["status"]
        click.echo(f"error: {len(failed)} of {len(df)} requests failed; first: {reason}", err=True)
        sys.exit(EXIT_FAILED)


serve_command = click.Command(
    "serve", callback=serve, help=serve.__doc__ + "\n\nCONFIG: a serving config or a scenario with one "
    "`task: serve` tenant; options override it.",
    params=[click.Argument(["config"], required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)),
            click.Option(["--out"], type=click.Path(file_okay=False, path_type=Path),
                         help="Run directory (default results/serve-<engine>-<model>-<time>/)."),
            click.Option(["--device"], type=click.Choice(["auto", "cuda", "cpu"]),
                         help="Default: the scenario's device, else auto."),
            click.Option(["--http"], is_flag=True, help="Serve the engine over HTTP (OpenAI /v1/completions) "
                         "instead of running the workload; Ctrl-C or SIGTERM stops it (exit 130)."),
            *config_options()])
