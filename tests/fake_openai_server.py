"""A stand-in for vLLM's OpenAI-compatible server (aiohttp): GET /v1/models, and POST
/v1/completions streaming `max_tokens` chunks in vLLM's SSE format (`data: {json}` lines, a
final chunk with `choices: []` and `usage`, then `data: [DONE]`) with a per-token delay.
Flags make it fail the ways a real server does: exit before ready, never become ready."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

from aiohttp import web


def chunk(model: str, choices: list, usage=None) -> bytes:
    body = {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def app(args) -> web.Application:
    async def models(request):
        if args.never_ready:
            return web.json_response({"error": "loading"}, status=503)
        return web.json_response({"object": "list", "data": [{"id": args.model, "object": "model"}]})

    async def completions(request):
        body = await request.json()
        n, prompt = int(body["max_tokens"]), body["prompt"]
        print(f"completion max_tokens={n}", flush=True)  # the log tells what the server was sent
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(n):
            await asyncio.sleep(args.delay_ms / 1e3)
            done = "length" if i == n - 1 else None
            await resp.write(chunk(args.model, [{"index": 0, "text": f" t{i}", "logprobs": None,
                                                 "finish_reason": done, "stop_reason": None}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            await resp.write(chunk(args.model, [], {"prompt_tokens": len(prompt), "completion_tokens": n,
                                                    "total_tokens": len(prompt) + n}))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    a = web.Application()
    a.router.add_get("/v1/models", models)
    a.router.add_post("/v1/completions", completions)
    return a


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model", default="fake-model")
    p.add_argument("--delay-ms", type=float, default=2.0)
    p.add_argument("--exit-code", type=int, help="exit at once with this code (a server that fails to start)")
    p.add_argument("--never-ready", action="store_true", help="/v1/models answers 503 forever")
    p.add_argument("--pid-file", help="append 'pid child_pid' here: tests look for leftovers by group")
    args = p.parse_args()
    print(f"fake server on port {args.port}, MY_ENV={os.environ.get('MY_ENV')}", flush=True)
    if args.pid_file:  # a worker in the same group, as an engine's workers: it must not outlive the run
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(args.pid_file, "a") as f:
            f.write(f"{os.getpid()} {child.pid}\n")
    if args.exit_code is not None:
        print("fake server: failing on purpose", file=sys.stderr, flush=True)
        sys.exit(args.exit_code)
    web.run_app(app(args), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
