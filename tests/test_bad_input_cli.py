"""Malformed input to every command (run, report, serve incl. --http, scale, sweep, advise,
doctor, models): one line that names what is wrong, exit 2, and nothing already measured is
touched. In this process: each case fails before any model is built or process started."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import pytest
import yaml

from helpers import run_cli, tiny

from tenancy.cli.main import cli

Setup = Callable[[Path], list]


def good(**kw) -> dict:
    return {"name": "bad", "device": "cpu", "iterations": 2, "warmup": 0, "repeats": 1,
            "tenants": [tiny("a", "bert-base")], **kw}


def tenant(**kw) -> dict:
    return good(tenants=[{**tiny("a", "bert-base"), **kw}])


def decoder(**kw) -> dict:
    return good(tenants=[{**tiny("d", "distilgpt2"), **kw}])


def endpoint(**block) -> dict:
    return decoder(task="endpoint", endpoint={"command": ["server", "--port", "{port}"], **block})


def serve(**block) -> dict:
    return decoder(task="serve", serving=block)


def scale(**block) -> dict:
    base = {"policies": [{"kind": "static", "replicas": 1}]}
    return decoder(task="serve", autoscale=None, serving={}) | {"autoscale": {**base, **block}}


def file(content, name: str = "s.yaml") -> Setup:
    def make(tmp: Path) -> list:
        p = tmp / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return [p]
    return make


def cmd(*args, setup: Setup | None = None) -> Setup:
    """`args` after the files `setup` makes; "{tmp}" in an argument is the test's tmp dir."""
    def make(tmp: Path) -> list:
        files = setup(tmp) if setup else []
        return [str(a).replace("{tmp}", str(tmp)) for a in args] + [str(f) for f in files]
    return make


def folder(*files: str) -> Setup:
    def make(tmp: Path) -> list:
        d = tmp / "dir"
        d.mkdir()
        for f in files:
            (d / f).write_text("{not json")
        return [d]
    return make


RUN = {  # tenancy run FILE: the scenario's fields, each wrong in its own way
    "run-missing-file": (cmd("run", "{tmp}/nope.yaml"), "nope.yaml"),
    "run-a-directory": (cmd("run", "{tmp}"), None),
    "run-empty-file": (cmd("run", setup=file("")), None),
    "run-top-level-list": (cmd("run", setup=file("- a\n- b\n")), None),
    "run-top-level-scalar": (cmd("run", setup=file("42\n")), None),
    "run-unclosed-bracket": (cmd("run", setup=file("name: x\ntenants: [\n")), None),
    "run-tab-indent": (cmd("run", setup=file("name: x\ntenants:\n\t- {name: a, model: bert-base}\n")), None),
    "run-no-tenants": (cmd("run", setup=file(good(tenants=[]))), "tenants"),
    "run-unknown-field": (cmd("run", setup=file(good(colour="blue"))), "colour"),
    "run-unknown-model": (cmd("run", setup=file(tenant(model="gpt-17"))), "gpt-17"),
    "run-batch-negative": (cmd("run", setup=file(tenant(batch=-1))), "batch"),
    "run-batch-string": (cmd("run", setup=file(tenant(batch="eight"))), "batch"),
    "run-seq-zero": (cmd("run", setup=file(tenant(seq=0))), "seq"),
    "run-repeats-zero": (cmd("run", setup=file(good(repeats=0))), "repeats"),
    "run-iterations-nan": (cmd("run", setup=file("name: x\niterations: .nan\ntenants: [{name: a, model: bert-base}]\n")),
                           "iterations"),
    "run-iterations-huge": (cmd("run", setup=file(good(iterations=2 ** 70))), "iterations"),
    "run-warmup-huge": (cmd("run", setup=file(good(warmup=10 ** 9))), "warmup"),
    "run-min-duration-negative": (cmd("run", setup=file(good(min_duration_s=-1))), "min_duration_s"),
    "run-device-tpu": (cmd("run", setup=file(good(device="tpu"))), "device"),
    "run-sharing-unknown": (cmd("run", setup=file(good(sharing={"mode": "warp"}))), "sharing"),
    "run-duplicate-tenant-names": (cmd("run", setup=file(good(tenants=[tiny("a", "bert-base"),
                                                                      tiny("a", "distilgpt2")]))), "a"),
    "run-tenant-name-slash": (cmd("run", setup=file(tenant(name="a/b"))), "name"),
    "run-dtype-float8": (cmd("run", setup=file(tenant(dtype="float8"))), "dtype"),
    "run-mps-percentage-150": (cmd("run", setup=file(tenant(mps={"active_thread_percentage": 150}))),
                               "active_thread_percentage"),
    "run-mps-mem-lots": (cmd("run", setup=file(tenant(mps={"pinned_mem_limit": "lots"}))), "pinned_mem_limit"),
    "run-generate-on-encoder": (cmd("run", setup=file(tenant(task="generate"))), "decoder"),
    "run-serving-block-on-forward": (cmd("run", setup=file(tenant(serving={}))), "serve"),
    "run-endpoint-without-block": (cmd("run", setup=file(decoder(task="endpoint"))), "endpoint"),
    "run-endpoint-block-without-task": (cmd("run", setup=file(decoder(endpoint={"command": ["x"]}))), "endpoint"),
    "run-endpoint-empty-command": (cmd("run", setup=file(endpoint(command=[]))), "command"),
    "run-endpoint-timeout-zero": (cmd("run", setup=file(endpoint(ready_timeout_s=0))), "ready_timeout_s"),
    "run-endpoint-env-number": (cmd("run", setup=file(endpoint(env={"A": [1]}))), "env"),
    "run-endpoint-in-streams": (cmd("run", setup=file(endpoint() | {"sharing": "streams"})), "streams"),
    "run-serve-rate-negative": (cmd("run", setup=file(serve(workload={"rate": -1}))), "rate"),
    "run-serve-arrival-unknown": (cmd("run", setup=file(serve(workload={"arrival": "random"}))), "arrival"),
    "run-serve-block-size-zero": (cmd("run", setup=file(serve(block_size=0))), "block_size"),
    "run-model-folder-without-config": (cmd("run", setup=lambda t: [t / "s.yaml"] if file(
        tenant(model=str(folder()(t)[0])))(t) else []), "config.json"),
    "run-flag-iterations-zero": (cmd("run", "--iterations", "0", setup=file(good())), "--iterations"),
    "run-flag-warmup-negative": (cmd("run", "--warmup", "-1", setup=file(good())), "--warmup"),
    "run-flag-device-tpu": (cmd("run", "--device", "tpu", setup=file(good())), "--device"),
    "run-flag-out-is-a-file": (cmd("run", "--out", "{tmp}/s.yaml", setup=file(good())), "--out"),
    "run-two-scenarios": (cmd("run", "{tmp}/other.yaml", setup=file(good())), None),
}

SERVE = {  # tenancy serve [CONFIG] [--http]: flags and config files
    "serve-port-negative": (cmd("serve", "--http", "--port", "-5"), "port"),
    "serve-port-huge": (cmd("serve", "--http", "--port", "99999"), "port"),
    "serve-port-text": (cmd("serve", "--http", "--port", "abc"), "--port"),
    "serve-rate-negative": (cmd("serve", "--rate", "-1", "--size", "tiny"), "rate"),
    "serve-num-requests-zero": (cmd("serve", "--num-requests", "0", "--size", "tiny"), "num_requests"),
    "serve-input-len-text": (cmd("serve", "--input-len", "long", "--size", "tiny"), "input"),
    "serve-input-len-reversed": (cmd("serve", "--input-len", "64-8", "--size", "tiny"), "input_len"),
    "serve-engine-unknown": (cmd("serve", "--engine", "warp"), "--engine"),
    "serve-model-unknown": (cmd("serve", "--model", "gpt-17", "--size", "tiny"), "gpt-17"),
    "serve-model-encoder": (cmd("serve", "--model", "bert-base", "--size", "tiny"), "bert-base"),
    "serve-top-p-two": (cmd("serve", "--top-p", "2", "--size", "tiny"), "top_p"),
    "serve-temperature-negative": (cmd("serve", "--temperature", "-1", "--size", "tiny"), "temperature"),
    "serve-kv-fraction-over-one": (cmd("serve", "--kv-memory-fraction", "1.5", "--size", "tiny"),
                                   "kv_memory_fraction"),
    "serve-trace-missing": (cmd("serve", "--trace", "{tmp}/none.jsonl", "--size", "tiny"), "none.jsonl"),
    "serve-config-missing": (cmd("serve", "{tmp}/none.yaml"), "none.yaml"),
    "serve-config-list": (cmd("serve", setup=file("[1, 2]\n")), None),
    "serve-config-unknown-field": (cmd("serve", setup=file({"model": "distilgpt2", "warp": 9})), "warp"),
    "serve-http-max-model-len-zero": (cmd("serve", "--http", "--port", "0", "--size", "tiny",
                                          "--max-model-len", "0"), "max_model_len"),
    "serve-http-weights-missing": (cmd("serve", "--http", "--port", "0", "--weights", "{tmp}/no-weights"),
                                   "no-weights"),
}

OTHERS = {  # report, scale, sweep, advise, doctor, models
    "report-missing-path": (cmd("report", "{tmp}/none"), "none"),
    "report-a-file": (cmd("report", setup=file("x: 1\n", "summary.csv")), None),
    "report-empty-folder": (cmd("report", setup=folder()), None),
    "report-compare-one": (cmd("report", "--compare", "{tmp}", setup=lambda t: []), None),
    "report-out-is-a-file": (cmd("report", "--out", "{tmp}/f", setup=lambda t: [
        (t / "f").write_text("x") and t]), "--out"),
    "scale-missing-file": (cmd("scale", "{tmp}/none.yaml"), "none.yaml"),
    "scale-no-autoscale-block": (cmd("scale", setup=file(good())), "autoscale"),
    "scale-device-tpu": (cmd("scale", "--device", "tpu", setup=file(good())), "--device"),
    "sweep-missing-suite": (cmd("sweep", "{tmp}/none"), "none"),
    "sweep-empty-suite": (cmd("sweep", setup=folder()), None),
    "sweep-bad-scenario-inside": (cmd("sweep", "--dry-run", setup=lambda t: file(tenant(batch=0), "x.yaml")(t)),
                                  "batch"),
    "sweep-repeats-zero": (cmd("sweep", "--repeats", "0", setup=file(good())), "--repeats"),
    "sweep-executor-unknown": (cmd("sweep", "--executor", "k8s", setup=file(good())), "--executor"),
    "sweep-cluster-file-missing": (cmd("sweep", "--executor", "slurm", "--cluster", "{tmp}/c.yaml",
                                       setup=file(good())), "c.yaml"),
    "sweep-status-not-a-study": (cmd("sweep", "--status", setup=folder()), None),
    "advise-missing-study": (cmd("advise", "--gpus", "1", "{tmp}/none"), "none"),
    "advise-gpus-zero": (cmd("advise", "--gpus", "0", "{tmp}"), "--gpus"),
    "advise-no-gpus": (cmd("advise", "{tmp}"), "--gpus"),
    "advise-slo-malformed": (cmd("advise", "--gpus", "1", "--slo", "bert", "{tmp}"), "--slo"),
    "advise-demand-malformed": (cmd("advise", "--gpus", "1", "--demand", "bert=many", "{tmp}"), "--demand"),
    "advise-empty-study": (cmd("advise", "--gpus", "1", setup=folder()), None),
    "advise-max-per-gpu-nine": (cmd("advise", "--gpus", "1", "--max-per-gpu", "9", "{tmp}"), "--max-per-gpu"),
    "doctor-extra-argument": (cmd("doctor", "now"), None),
    "doctor-unknown-flag": (cmd("doctor", "--fix"), "--fix"),
    "models-unknown-id": (cmd("models", "acme/never-cached-model"), "acme/never-cached-model"),
    "models-folder-without-config": (cmd("models", setup=folder()), "config.json"),
    "models-broken-config": (cmd("models", setup=folder("config.json")), "config.json"),
}

CASES = {**RUN, **SERVE, **OTHERS}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_input_is_one_line_and_exit_2(case, tmp_path):
    make, words = CASES[case]
    args = make(tmp_path)
    code, err = run_cli(*args)
    lines = err.strip().splitlines()
    assert code == 2, (args, code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "internal error" not in err
    if words:
        assert words in lines[0], (words, lines[0])


def test_the_list_is_long_enough():
    assert len(CASES) >= 60


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["run-batch-negative", "run-unknown-model", "run-endpoint-empty-command",
                                  "run-flag-iterations-zero"])
def test_a_bad_run_into_a_measured_folder_leaves_it_byte_identical(case, tmp_path):
    out = tmp_path / "measured"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"status": "complete"}))
    (out / "summary.csv").write_text("phase,tenant,mean_ms\nsolo,a,1.5\n")
    (out / "samples.parquet").write_bytes(b"PAR1" + bytes(range(64)) + b"PAR1")
    before = _digest(out)
    make, _ = RUN[case]
    code, err = run_cli(*make(tmp_path), "--out", out)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert _digest(out) == before


def test_every_listed_command_loads_under_its_own_name():
    """The commands are imported by name when they run (cli/main.py COMMANDS): a wrong entry in
    that table would be an internal error for one command only, so each is loaded here."""
    import click

    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert {"run", "sweep", "report", "serve", "scale", "advise", "doctor", "models"} <= set(names)
    for name in names:
        command = cli.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
    assert cli.get_command(ctx, "nosuch") is None
