"""One endpoint tenant on a real vLLM (its CPU build, tools/vllm_cpu.sh): the results contract
holds for a real engine's server. Minutes to start: `pytest -m engine tests/test_endpoint_vllm.py`."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from helpers import tenancy, write_scenario

pytestmark = [pytest.mark.engine, pytest.mark.slow]
TOOLS = Path(__file__).parent.parent / "tools"


def vllm_python() -> str:
    p = subprocess.run(["bash", str(TOOLS / "vllm_cpu.sh"), "python"], capture_output=True, text=True)
    if p.returncode:
        pytest.skip("vLLM CPU is not installed (tools/vllm_cpu.sh install)")
    return p.stdout.strip()


def test_a_vllm_server_as_a_tenant(tmp_path):
    from tenancy.hf_folder import TINY_LLAMA, build_folder

    folder = build_folder(tmp_path / "tiny-llama", {"model_type": "llama", **TINY_LLAMA})
    command = [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
               "--host", "127.0.0.1", "--port", "{port}", "--skip-tokenizer-init", "--dtype", "float32",
               "--max-model-len", "512", "--max-num-seqs", "8"]
    path = write_scenario(tmp_path / "s.yaml", name="vllm", device="cpu", sharing="exclusive", repeats=1,
                          iterations=1, warmup=0, tenants=[{
                              "name": "vllm", "model": str(folder), "task": "endpoint", "endpoint": {
                                  "command": command, "ready_timeout_s": 480,
                                  "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"},
                                  "workload": {"rate": 4, "num_requests": 16, "input_len": [16, 64],
                                               "output_len": [8, 32]}}}])
    proc = tenancy("run", path, "--out", tmp_path / "run", timeout=900)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["tenants"][0]["status"] == "ok"
    req = pd.read_parquet(run / "requests.parquet")
    assert len(req) >= 16 and (req["status"] == "finished").all()
    assert (req["output_len"] == req["max_new_tokens"]).all()  # ignore_eos, counted by usage
    samples = pd.read_parquet(run / "samples.parquet")
    assert (samples["prefill_ms"] > 0).all() and samples["decode_ms_per_token"].notna().any()
    summary = pd.read_csv(run / "summary.csv")
    assert summary.loc[0, "task"] == "endpoint" and summary.loc[0, "mean_ms"] > 0
    print(summary[["tenant", "n", "mean_ms", "prefill_ms", "decode_ms_per_token", "items_per_s"]].to_string())
    print(req[["ttft_ms", "tpot_ms", "e2e_ms", "queue_ms"]].describe().to_string())
