"""`tenancy serve --http`: the OpenAI-compatible server on a tiny random Llama, over real HTTP
(uvicorn in a thread of the test, one subprocess for the CLI and its signals)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import uvicorn

from tenancy.models import zoo
from tenancy.models.hf_folder import byte_tokenizer
from tenancy.serving.config import ServingConfig
from tenancy.serving.engine import LLMEngine
from tenancy.serving.http.app import create_app
from tenancy.serving.http.server import bind

MAX_LEN = 256
NAME = "tiny-llama"


@pytest.fixture(scope="module")
def url():
    cfg = ServingConfig(model="llama-3.2-1b", size="tiny", num_blocks=512, max_batch_size=16,
                        max_tokens_per_iteration=512)
    engine = LLMEngine(zoo.build(cfg.model, "tiny"), cfg, max_seq_len=MAX_LEN)
    app = create_app(engine, byte_tokenizer(engine.vocab_size), NAME, MAX_LEN)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=30)
    assert not thread.is_alive() and not app.state.bridge.thread.is_alive()  # the engine thread ended


def sse(lines) -> list:
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_health_models_and_a_whole_completion(url):
    assert httpx.get(f"{url}/health").status_code == 200
    card = httpx.get(f"{url}/v1/models").json()["data"]
    assert [c["id"] for c in card] == [NAME] and card[0]["max_model_len"] == MAX_LEN
    r = httpx.post(f"{url}/v1/completions", json={"model": NAME, "prompt": "hello there", "max_tokens": 7,
                                                   "ignore_eos": True, "repetition_penalty": 1.0})
    body = r.json()
    assert r.status_code == 200 and body["object"] == "text_completion" and body["model"] == NAME
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}  # bytes
    assert body["choices"][0]["finish_reason"] == "length" and isinstance(body["choices"][0]["text"], str)


def test_stream_matches_the_whole_completion_and_ends_with_usage(url):
    req = {"prompt": [5, 9, 300, 17], "max_tokens": 6, "ignore_eos": True}
    whole = httpx.post(f"{url}/v1/completions", json=req).json()
    with httpx.stream("POST", f"{url}/v1/completions", json=req | {
            "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = sse(r.iter_lines())
    *tokens, usage = chunks
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6
    assert all(c["object"] == "text_completion" and c["usage"] is None for c in tokens)
    assert "".join(c["choices"][0]["text"] for c in tokens) == whole["choices"][0]["text"]
    assert [c["choices"][0]["finish_reason"] for c in tokens][-1] == "length"


def test_stop_string_ends_the_request(url):
    whole = httpx.post(f"{url}/v1/completions", json={"prompt": "abc", "max_tokens": 12, "ignore_eos": True}).json()
    text = whole["choices"][0]["text"]
    stop = text[len(text) // 2:len(text) // 2 + 2]
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "abc", "max_tokens": 12, "ignore_eos": True,
                                                   "stop": [stop]}).json()
    assert r["choices"][0]["finish_reason"] == "stop" and r["choices"][0]["text"] == text[:text.find(stop)]


def test_concurrent_requests_share_iterations(url):
    """Each of N streams has its first token and none has finished: all N run in one batch."""
    n = 6

    async def main():
        async with httpx.AsyncClient(timeout=60) as client:
            first = [asyncio.Event() for _ in range(n)]

            async def one(i: int) -> int:
                req = {"prompt": [10 + i] * (3 + i), "max_tokens": 150, "ignore_eos": True, "stream": True}
                count = 0
                async with client.stream("POST", f"{url}/v1/completions", json=req) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            count += 1
                            first[i].set()
                return count

            tasks = [asyncio.create_task(one(i)) for i in range(n)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in first)), 60)
            metrics = (await client.get(f"{url}/metrics")).text
            return metrics, await asyncio.gather(*tasks)

    metrics, counts = asyncio.run(main())
    running = next(line for line in metrics.splitlines() if line.startswith("tenancy:num_requests_running"))
    assert float(running.split()[-1]) == n, metrics
    assert "tenancy:kv_cache_usage_perc" in metrics and "tenancy:num_requests_waiting" in metrics
    assert all(c >= 2 for c in counts)


BAD = {
    "max_tokens zero": ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
    "max_tokens negative": ({"prompt": "hi", "max_tokens": -3}, "max_tokens"),
    "max_tokens a string": ({"prompt": "hi", "max_tokens": "ten"}, "max_tokens"),
    "max_tokens a float": ({"prompt": "hi", "max_tokens": 2.5}, "max_tokens"),
    "too long for the positions": ({"prompt": [5] * 250, "max_tokens": 10}, "max_tokens"),
    "token id past the vocab": ({"prompt": [5, 4096], "max_tokens": 2}, "prompt"),
    "negative token id": ({"prompt": [-1, 5], "max_tokens": 2}, "prompt"),
    "empty prompt": ({"prompt": "", "max_tokens": 2}, "prompt"),
    "empty ids": ({"prompt": [], "max_tokens": 2}, "prompt"),
    "no prompt": ({"max_tokens": 2}, "prompt"),
    "prompt a number": ({"prompt": 5, "max_tokens": 2}, "prompt"),
    "two prompts": ({"prompt": ["a", "b"], "max_tokens": 2}, "prompt"),
    "negative temperature": ({"prompt": "hi", "temperature": -1}, "temperature"),
    "top_p zero": ({"prompt": "hi", "top_p": 0}, "top_p"),
    "stream a string": ({"prompt": "hi", "stream": "yes"}, "stream"),
    "stop a number": ({"prompt": "hi", "stop": 3}, "stop"),
    "n of two": ({"prompt": "hi", "n": 2}, "n"),
    "logprobs asked": ({"prompt": "hi", "logprobs": 1}, "logprobs"),
    "body a list": ([1, 2], None),
}


@pytest.mark.parametrize("body,param", BAD.values(), ids=BAD.keys())
def test_bad_requests_are_400_with_an_openai_error(url, body, param):
    r = httpx.post(f"{url}/v1/completions", json=body)
    err = r.json()["error"]
    assert r.status_code == 400 and err["code"] == 400 and err["type"] == "BadRequestError"
    assert err["message"] and (param is None or (err["param"] or "").startswith(param)), err
    assert httpx.post(f"{url}/v1/completions", json={"prompt": [5], "max_tokens": 1}).status_code == 200


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe"])
def test_malformed_json_is_400(url, raw):
    r = httpx.post(f"{url}/v1/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == 400


def test_unknown_model_is_404_as_vllm(url):
    r = httpx.post(f"{url}/v1/completions", json={"model": "gpt-9", "prompt": "hi"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "NotFoundError" and "gpt-9" in r.json()["error"]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_and_stops_on_a_signal(sig):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-m", "tenancy.cli.main", "serve", "--http", "--port", "0", "--model",
                             "llama-3.2-1b", "--size", "tiny", "--num-blocks", "64"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        while "serving" not in line:
            line = proc.stderr.readline()
            assert line, "server exited before serving"
        base = line.split(" at ")[-1].strip()
        r = httpx.post(f"{base}/completions", json={"prompt": "hi", "max_tokens": 3}, timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 130
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


def test_port_in_use_is_one_line_exit_2():
    sock = bind("127.0.0.1", 0)
    sock.listen()
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    r = subprocess.run([sys.executable, "-m", "tenancy.cli.main", "serve", "--http", "--port", str(sock.getsockname()[1]),
                        "--size", "tiny"], env=env, capture_output=True, text=True, timeout=120)
    sock.close()
    assert r.returncode == 2 and r.stderr.strip().startswith("error: cannot listen on"), r.stderr


def test_an_engine_that_dies_fails_its_requests_and_health_says_so():
    """A crash in the engine thread (say, out of memory) must not leave clients waiting forever."""
    from fastapi.testclient import TestClient

    cfg = ServingConfig(model="llama-3.2-1b", size="tiny", num_blocks=64)
    engine = LLMEngine(zoo.build(cfg.model, "tiny"), cfg, max_seq_len=MAX_LEN)

    def step():
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")
    engine.step = step
    with TestClient(create_app(engine, byte_tokenizer(engine.vocab_size), NAME, MAX_LEN)) as client:
        r = client.post("/v1/completions", json={"prompt": [5, 6], "max_tokens": 4})
        assert r.status_code == 500 and "out of memory" in r.json()["error"]["message"], r.text
        assert client.get("/health").status_code == 500
        again = client.post("/v1/completions", json={"prompt": [5], "max_tokens": 1, "stream": True})
        assert again.status_code == 500 and again.json()["error"]["type"] == "InternalServerError"
