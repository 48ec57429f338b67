"""The async streaming client that drives an OpenAI-compatible server with a workload.

Each request is POST {url}/completions with token-id prompts, `max_tokens`, `ignore_eos` and
`stream_options.include_usage`, sent at its scheduled arrival. The metrics are `vllm bench
serve`'s (tenancy/serving/metrics.py), with one change: they count from the SCHEDULED arrival,
not from when the request was sent, so a client that falls behind cannot hide the server's
queueing (no coordinated omission); the send time is kept as `admitted_s`. A chunk with
`choices` is a token event (TTFT: the first, ITL: the gaps), the output length is the final
usage chunk's `completion_tokens` (the number of chunks when a server sends no usage).
"""
from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Callable, Optional

from tenancy.serving.metrics import latencies
from tenancy.serving.workload import RequestSpec

ENGINE = "endpoint"
POLL_S = 0.1  # how often a waiting driver looks at the stop flag


def request_row(spec: RequestSpec, arrival_s: float, sent_s: float, chunk_s: list[float], finish_s: float,
                output_len: Optional[int], error: Optional[str] = None) -> dict:
    """One requests.parquet row (the columns of metrics.to_frame) from a request's times."""
    n = output_len if output_len is not None else len(chunk_s)
    ok = error is None and bool(chunk_s)
    first = chunk_s[0] if chunk_s else math.nan
    return dict(request_id=spec.id, engine=ENGINE, status="finished" if ok else "failed",
                error=error if error or ok else "no tokens streamed", input_len=len(spec.prompt),
                output_len=n, max_new_tokens=spec.output_len, arrival_s=arrival_s, admitted_s=sent_s,
                first_token_s=first, finish_s=finish_s, queue_ms=(sent_s - arrival_s) * 1e3,
                **latencies(arrival_s, first, finish_s, n), num_preemptions=0, token_times_s=list(chunk_s))


def payload(model: Optional[str], spec: RequestSpec) -> dict:
    body = {"prompt": spec.prompt, "max_tokens": spec.output_len, "ignore_eos": True, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True}}
    return {"model": model, **body} if model else body


async def _one(session, url: str, model: Optional[str], spec: RequestSpec, arrival_s: float,
               clock: Callable[[], float]) -> dict:
    sent = clock()
    chunks: list[float] = []
    usage: Optional[int] = None
    try:
        async with session.post(f"{url}/completions", json=payload(model, spec)) as resp:
            if resp.status != 200:
                text = " ".join((await resp.text()).split())[:200]
                return request_row(spec, arrival_s, sent, [], clock(), None, f"HTTP {resp.status}: {text}")
            async for raw in resp.content:  # one SSE line at a time
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                msg = json.loads(data)
                if msg.get("choices"):
                    chunks.append(clock())
                elif msg.get("usage"):
                    usage = msg["usage"].get("completion_tokens")
    except (OSError, ValueError, asyncio.TimeoutError) as err:  # aiohttp.ClientError is an OSError
        return request_row(spec, arrival_s, sent, chunks, clock(), usage, f"{type(err).__name__}: {err}"[:200])
    return request_row(spec, arrival_s, sent, chunks, clock(), usage)


async def drive(url: str, model: Optional[str], specs: list[RequestSpec], t0_ns: int,
                concurrency: Optional[int] = None, stop: Callable[[], bool] = lambda: False,
                check: Callable[[], None] = lambda: None,
                progress: Callable[[int], None] = lambda n: None) -> list[dict]:
    """Send `specs` at t0_ns + arrival_s (perf_counter_ns clock), or keep `concurrency` in flight
    (closed loop: arrival = release). `stop()` true: send no more and drop what is in flight;
    `check()` raises when the server died; `progress(n)` hears how many have ended, every
    POLL_S. Returns the rows of the requests that ended."""
    import aiohttp

    clock = lambda: (time.perf_counter_ns() - t0_ns) / 1e9  # noqa: E731
    gate = asyncio.Semaphore(concurrency) if concurrency else None
    tasks: set[asyncio.Task] = set()
    rows: list[dict] = []
    ended = [0]

    def watch() -> None:
        check()
        n = sum(t.done() for t in tasks)
        if n != ended[0]:
            ended[0] = n
            progress(n)

    async def wait_until(t: float) -> bool:
        while (left := t - clock()) > 0:
            if stop():
                return False
            watch()
            await asyncio.sleep(min(left, POLL_S))
        return not stop()

    async def released(spec: RequestSpec, arrival: float) -> dict:
        try:
            return await _one(session, url, model, spec, arrival, clock)
        finally:
            if gate:
                gate.release()

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        try:
            for spec in sorted(specs, key=lambda s: (s.arrival_s or 0.0, s.id)):
                if gate:
                    if not await _slot(gate, stop, watch):
                        break
                    arrival = clock()
                elif not await wait_until(spec.arrival_s):
                    break
                else:
                    arrival = spec.arrival_s
                tasks.add(asyncio.create_task(released(spec, arrival)))
            pending = set(tasks)
            while pending and not stop():
                watch()
                _, pending = await asyncio.wait(pending, timeout=POLL_S)
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        rows = [t.result() for t in tasks if t.done() and not t.cancelled() and t.exception() is None]
    return sorted(rows, key=lambda r: r["request_id"])


async def _slot(gate: asyncio.Semaphore, stop: Callable[[], bool], check: Callable[[], None]) -> bool:
    """Take a closed-loop slot; False when stopped first (the flag is looked at every POLL_S)."""
    while not stop():
        check()
        try:
            await asyncio.wait_for(gate.acquire(), POLL_S)
            return True
        except asyncio.TimeoutError:
            pass
    return False
