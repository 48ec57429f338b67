"""`tenancy serve` end to end on a tiny model: run directory contents, and one-line errors."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from tenancy.serving.cli import serve


@pytest.mark.parametrize("engine", ["iteration", "request", "hf"])
def test_serve_writes_a_run_directory(tmp_path, engine):
    cfg = tmp_path / "serving.yaml"
    cfg.write_text(
        "model: distilgpt2\nmax_batch_size: 4\nworkload:\n  arrival: poisson\n  rate: 200\n"
        "  num_requests: 6\n  input_len: [4, 12]\n  output_len: 3\nslos:\n  ttft_ms: 10000\n"
    )
    out = tmp_path / "run"
    result = CliRunner().invoke(serve, [str(cfg), "--engine", engine, "--out", str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out / "requests.parquet")
    assert sorted(df["request_id"]) == list(range(6)) and (df["status"] == "finished").all()
    assert (df["output_len"] == 3).all() and df["token_times_s"].map(len).eq(3).all()
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[0, "completed"] == 6 and summary.loc[0, "goodput"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["engine"] == engine and manifest["config"]["workload"]["num_requests"] == 6


@pytest.mark.parametrize("args,message", [
    (["--model", "bert-base"], "encoder"),
    (["--model", "gpt5"], "unknown model"),
    (["--input-len", "9-3"], "input_len"),
    (["--rate", "-1"], "rate"),
    (["--device", "abacus"], "device"),
])
def test_bad_input_is_one_line(args, message):
    result = CliRunner().invoke(serve, args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


def test_bad_yaml_is_one_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: distilgpt2\nworkload: {arrival: sometimes}\n")
    result = CliRunner().invoke(serve, [str(cfg)])
    assert result.exit_code == 2 and "workload.arrival" in result.output


def test_failed_requests_exit_1_with_the_first_reason(tmp_path):
    """Requests that can never fit the KV pool fail; the run is written, and the exit code says so."""
    out = tmp_path / "run"
    result = CliRunner().invoke(serve, ["--model", "distilgpt2", "--size", "tiny", "--num-requests", "3",
                                        "--input-len", "64", "--output-len", "2", "--num-blocks", "2",
                                        "--block-size", "4", "--out", str(out)])
    assert result.exit_code == 1
    assert "error: 3 of 3 requests failed; first: needs 66 tokens of KV cache" in result.output
    assert (pd.read_parquet(out / "requests.parquet")["status"] == "failed").all()


def test_device_auto_is_accepted_as_by_tenancy_run(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(serve, ["--model", "distilgpt2", "--size", "tiny", "--num-requests", "2",
                                        "--input-len", "8", "--output-len", "2", "--device", "auto",
                                        "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["device"] in ("cpu", "cuda")


def test_report_refuses_a_serve_directory_by_name(tmp_path):
    from tenancy.errors import TenancyError
    from tenancy.report.load import read

    out = tmp_path / "run"
    result = CliRunner().invoke(serve, ["--model", "distilgpt2", "--size", "tiny", "--num-requests", "2",
                                        "--input-len", "8", "--output-len", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "serving" and manifest["status"] == "complete"
    with pytest.raises(TenancyError, match="a `tenancy serve` run directory"):
        read(out)
