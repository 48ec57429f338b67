"""`tenancy serve` end to end on a tiny model, through the same entry point as every command:
run directory contents, options derived from the config, one-line errors, interruption."""
from __future__ import annotations

import json

import click
import pandas as pd
import pytest
import yaml
from helpers import run_cli
from pydantic import BaseModel

from tenancy.cli.serve import config_options, serve_command
from tenancy.serving.config import ServingConfig

TINY = ["--model", "distilgpt2", "--size", "tiny", "--device", "cpu"]


@pytest.mark.parametrize("engine", ["iteration", "request", "hf"])
def test_serve_writes_a_run_directory(tmp_path, engine):
    cfg = tmp_path / "serving.yaml"
    cfg.write_text(
        "model: distilgpt2\nsize: tiny\nmax_batch_size: 4\nworkload:\n  arrival: poisson\n  rate: 200\n"
        "  num_requests: 6\n  input_len: [4, 12]\n  output_len: 3\nslos:\n  ttft_ms: 10000\n"
    )
    out = tmp_path / "run"
    code, err = run_cli("serve", cfg, "--engine", engine, "--device", "cpu", "--out", out)
    assert code == 0, err
    df = pd.read_parquet(out / "requests.parquet")
    assert sorted(df["request_id"]) == list(range(6)) and (df["status"] == "finished").all()
    assert (df["output_len"] == 3).all() and df["token_times_s"].map(len).eq(3).all()
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[0, "completed"] == 6 and summary.loc[0, "goodput"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["engine"] == engine and manifest["config"]["workload"]["num_requests"] == 6
    assert manifest["kind"] == "serving" and manifest["status"] == "complete" and manifest["environment"]


@pytest.mark.parametrize("args,message", [
    (["--model", "bert-base"], "model: bert-base is an encoder"),
    (["--model", "gpt5"], "unknown model"),
    (["--input-len", "9-3"], "workload.input_len"),
    (["--rate", "-1"], "workload.rate"),
    (["--device", "abacus"], "--device"),
    (["--max-batch-size", "64", "--max-tokens-per-iteration", "8"], "must cover max_batch_size"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    code, err = run_cli("serve", *args)
    assert code == 2, err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_bad_yaml_is_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: distilgpt2\nworkload: {arrival: sometimes}\n")
    code, err = run_cli("serve", cfg)
    assert code == 2 and err.startswith(f"error: {cfg}: workload.arrival: Input should be")
    cfg.write_bytes(b"model: \xff\xfe\n")
    code, err = run_cli("serve", cfg)
    assert code == 2 and "not a UTF-8 text file" in err
    for text, words in [("- a\n- b\n", "expected a mapping of fields, got list"), ("5\n", "got int"),
                        ("workload: 5\n", "workload: Input should be a valid dictionary")]:
        cfg.write_text(text)  # an option never papers over the file's own mistake
        code, err = run_cli("serve", cfg, "--rate", "3")
        assert code == 2 and err.startswith(f"error: {cfg}: ") and words in err, err


def test_every_config_field_is_an_option_with_its_help():
    """Derived, not hand-kept: each leaf field of ServingConfig has exactly one option, whose type
    follows the field's and whose help is the field's description."""
    options = {o.name: o for o in config_options()}

    def leaves(model, key=""):
        for name, f in model.model_fields.items():
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
                yield from leaves(f.annotation, f"{key}{name}__")
            else:
                yield f"{key}{name}", f
    fields = dict(leaves(ServingConfig))
    assert set(options) == set(fields)
    assert options["workload__rate"].opts == ["--rate"] and options["slos__ttft_ms"].opts == ["--slo-ttft-ms"]
    assert options["workload__seed"].opts == ["--workload-seed"] and options["seed"].opts == ["--seed"]
    assert options["chunked_prefill"].is_flag and options["chunked_prefill"].secondary_opts == ["--no-chunked-prefill"]
    assert isinstance(options["kv_policy"].type, click.Choice) and list(options["kv_policy"].type.choices) == [
        "paged", "reserve"]
    assert options["max_batch_size"].help.startswith(fields["max_batch_size"].description)
    assert "[default: 64]" in options["max_batch_size"].help
    assert {p.name for p in serve_command.params} >= {"config", "out", "device", *options}


def test_a_scenario_with_one_serve_tenant_is_a_serve_config(tmp_path):
    """The model comes from the tenant and the seed from the scenario, as in `tenancy run`."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "device": "cpu", "seed": 5, "tenants": [
        {"name": "llm", "model": "distilgpt2", "size": "tiny", "task": "serve",
         "serving": {"max_batch_size": 2, "workload": {"num_requests": 2, "input_len": 4, "output_len": 2,
                                                      "rate": 500}}}]}))
    out = tmp_path / "run"
    code, err = run_cli("serve", path, "--out", out, "--max-batch-size", "3")
    assert code == 0, err
    cfg = json.loads((out / "manifest.json").read_text())["config"]
    assert (cfg["model"], cfg["size"], cfg["seed"], cfg["max_batch_size"]) == ("distilgpt2", "tiny", 5, 3)
    two = yaml.safe_load(path.read_text())
    two["tenants"].append({"name": "bert", "model": "bert-base", "size": "tiny"})
    path.write_text(yaml.safe_dump(two))
    code, err = run_cli("serve", path)
    assert code == 2 and "run it with `tenancy run" in err


def test_failed_requests_exit_1_with_the_first_reason(tmp_path):
    """Requests that can never fit the KV pool fail; the run is written, and the exit code says so."""
    out = tmp_path / "run"
    code, err = run_cli("serve", *TINY, "--num-requests", "3", "--input-len", "64",
                        "--output-len", "2", "--num-blocks", "2", "--block-size", "4", "--out", out)
    assert code == 1
    assert "error: 3 of 3 requests failed; first: needs 66 tokens of KV cache" in err
    assert (pd.read_parquet(out / "requests.parquet")["status"] == "failed").all()
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"


def test_interrupt_writes_what_arrived_and_exits_130(tmp_path, monkeypatch):
    """Ctrl-C / SIGTERM (main() turns both into KeyboardInterrupt) in the middle of the workload:
    requests that had arrived are written, the unfinished ones marked, the manifest says so."""
    from tenancy.serving.engine import LLMEngine

    real_step, steps = LLMEngine.step, []

    def step(self):
        steps.append(1)
        if len(steps) == 6:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(LLMEngine, "step", step)
    out = tmp_path / "run"
    code, err = run_cli("serve", *TINY, "--num-requests", "40", "--rate", "1000",
                        "--input-len", "4", "--output-len", "4", "--max-batch-size", "2", "--out", out)
    assert code == 130 and "interrupted" in err
    df = pd.read_parquet(out / "requests.parquet")
    assert 0 < len(df) <= 40 and (df["error"] == "interrupted").any()
    assert set(df.loc[df["status"] == "failed", "error"]) == {"interrupted"}
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_report_refuses_a_serve_directory_by_name(tmp_path):
    from tenancy.core.errors import TenancyError
    from tenancy.report.load import read

    out = tmp_path / "run"
    code, err = run_cli("serve", *TINY, "--num-requests", "2", "--input-len", "8",
                        "--output-len", "2", "--device", "auto", "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["device"] in ("cpu", "cuda")
    with pytest.raises(TenancyError, match="a `tenancy serve` run directory"):
        read(out)
