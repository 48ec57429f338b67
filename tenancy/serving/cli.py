"""`tenancy serve`: run a serving benchmark from a YAML config and/or options.

Writes a run directory: requests.parquet (one row per request), summary.csv, manifest.json.
Options override the YAML. Bad input ends with a one-line error, never a traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
from pydantic import ValidationError

_OVERRIDES = {  # option name -> dotted config key
    "engine": "engine", "model": "model", "size": "size", "dtype": "dtype", "weights": "weights",
    "max_batch_size": "max_batch_size", "max_tokens_per_iteration": "max_tokens_per_iteration",
    "block_size": "block_size", "num_blocks": "num_blocks", "kv_policy": "kv_policy",
    "chunked_prefill": "chunked_prefill", "seed": "seed", "attention_backend": "attention_backend",
    "cuda_graphs": "cuda_graphs", "pinned_staging": "pinned_staging", "kv_cache_gb": "kv_cache_gb",
    "save_tokens": "save_tokens",
    "arrival": "workload.arrival", "rate": "workload.rate", "burstiness": "workload.burstiness",
    "concurrency": "workload.concurrency", "num_requests": "workload.num_requests",
    "duration": "workload.duration_s", "input_len": "workload.input_len",
    "output_len": "workload.output_len", "trace": "workload.trace",
    "slo_ttft_ms": "slos.ttft_ms", "slo_tpot_ms": "slos.tpot_ms", "slo_e2e_ms": "slos.e2e_ms",
}


def _one_line(err: ValidationError) -> str:
    parts = [f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {e['msg']}" for e in err.errors()]
    return "invalid serving config: " + "; ".join(parts).replace("Value error, ", "")


@click.command("serve")
@click.argument("config", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="run directory (default results/serve-<engine>-<model>-<time>)")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--engine", type=click.Choice(["iteration", "request", "hf"]))
@click.option("--attention-backend", type=click.Choice(["auto", "reference", "batched", "flashinfer"]))
@click.option("--cuda-graphs/--no-cuda-graphs", default=None)
@click.option("--pinned-staging/--no-pinned-staging", default=None)
@click.option("--kv-cache-gb", type=float)
@click.option("--save-tokens/--no-save-tokens", default=None, help="write each request's output token ids")
@click.option("--model")
@click.option("--size", type=click.Choice(["full", "tiny"]))
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]))
@click.option("--weights", help="'random' or a local path / cached model id")
@click.option("--max-batch-size", type=int)
@click.option("--max-tokens-per-iteration", type=int)
@click.option("--block-size", type=int)
@click.option("--num-blocks", type=int)
@click.option("--kv-policy", type=click.Choice(["paged", "reserve"]))
@click.option("--chunked-prefill/--no-chunked-prefill", default=None)
@click.option("--arrival", type=click.Choice(["poisson", "gamma", "closed", "all_at_once", "sinusoidal"]))
@click.option("--rate", type=float, help="requests per second")
@click.option("--burstiness", type=float, help="gamma shape")
@click.option("--concurrency", type=int, help="closed loop: requests in flight")
@click.option("--num-requests", type=int)
@click.option("--duration", type=float, help="seconds of arrivals (open loop)")
@click.option("--input-len", help="N or LO-HI")
@click.option("--output-len", help="N or LO-HI")
@click.option("--trace", type=click.Path(exists=True, dir_okay=False), help="JSONL arrival_s,input_len,output_len")
@click.option("--slo-ttft-ms", type=float)
@click.option("--slo-tpot-ms", type=float)
@click.option("--slo-e2e-ms", type=float)
@click.option("--seed", type=int)
def serve(config: Path | None, out: Path | None, device: str, **options) -> None:
    """Benchmark LLM serving (iteration-level engine or a request-level baseline) on one device."""
    from tenancy.serving.config import ServingConfig

    overrides = {_OVERRIDES[k]: v for k, v in options.items() if v is not None}
    try:
        if config is not None:
            cfg = ServingConfig.from_yaml(config, **overrides)
        else:
            data: dict = {}
            for key, value in overrides.items():
                *parents, leaf = key.split(".")
                target = data
                for p in parents:
                    target = target.setdefault(p, {})
                target[leaf] = value
            cfg = ServingConfig.model_validate(data)
    except ValidationError as e:
        raise BadInput(_one_line(e)) from None
    except (OSError, ValueError) as e:  # unreadable / malformed YAML
        raise BadInput(f"{config}: {str(e).splitlines()[0]}") from None
    device = _check_device(device)
    from tenancy.errors import EXIT_FAILED, TenancyError
    from tenancy.results import new_run_dir

    try:
        out = new_run_dir(out, f"serve-{cfg.engine}-{cfg.model}")
    except TenancyError as e:
        raise BadInput(str(e)) from None

    from tenancy.serving.api import build_engine, engine_info, run_serving, write_run

    try:
        engine = build_engine(cfg, device)
        df = run_serving(cfg, device, engine=engine)
    except (ValueError, NotImplementedError, OSError) as e:  # e.g. a bad trace file, a missing weights path
        raise BadInput(str(e).splitlines()[0]) from None
    s = write_run(out, cfg, df, device, {"serving_engine": engine_info(engine)})
    click.echo(f"{cfg.engine} {cfg.model}/{cfg.size}: {s['completed']}/{s['num_requests']} requests, "
               f"{s['request_throughput']:.2f} req/s, {s['output_throughput']:.1f} tok/s, "
               f"TTFT p50 {s['p50_ttft_ms']:.1f} ms, E2E p50 {s['p50_e2e_ms']:.1f} ms p99 {s['p99_e2e_ms']:.1f} ms")
    click.echo(f"wrote {out}")
    failed = df[df["status"] != "finished"] if "status" in df else df.iloc[:0]
    if len(failed):  # the reason of each is in requests.parquet; the first one here
        first = failed.iloc[0]
        click.echo(f"error: {len(failed)} of {len(df)} requests failed; first: {first.get('error') or first['status']}",
                   err=True)
        sys.exit(EXIT_FAILED)


class BadInput(click.ClickException):
    """One line ("error: ..."), exit 2: no usage block, as everywhere in tenancy."""

    exit_code = 2


def _check_device(device: str) -> str:
    """The device to use: `auto` resolved as `tenancy run` does; one line when it cannot be used."""
    import torch

    from tenancy.environment import resolve_device
    from tenancy.errors import TenancyError

    if device == "auto":
        try:
            return resolve_device("auto")
        except TenancyError as e:
            raise BadInput(str(e)) from None
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BadInput(f"bad --device {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda requested but no CUDA device is available")
    if dev.type not in ("cpu", "cuda"):
        raise BadInput(f"--device {device!r}: only cpu and cuda are supported")
    return device
