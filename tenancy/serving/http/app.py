"""The routes: /v1/completions (streamed as server-sent events or whole), /v1/models, /health,
/metrics. Every bad request is an HTTP 400 with an OpenAI error body; the server goes on."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from tenancy.serving.engine import LLMEngine
from tenancy.serving.http.bridge import EngineThread, Stream
from tenancy.serving.http.protocol import (
    Choice,
    CompletionRequest,
    CompletionResponse,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
    Usage,
)
from tenancy.serving.sequence import SamplingParams


class APIError(Exception):
    """An OpenAI-style error reply: 400 for a bad request, 404 for an unknown model, 500 when the engine died."""

    def __init__(self, message: str, param: Optional[str] = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status


def error(message: str, param: Optional[str] = None, status: int = 400) -> JSONResponse:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    body = ErrorResponse(error=ErrorInfo(message=message, type=kind, param=param, code=status))
    return JSONResponse(body.model_dump(), status_code=status)


def create_app(engine: LLMEngine, tokenizer, model_name: str, max_model_len: int) -> FastAPI:
    """`tokenizer`: a transformers tokenizer (text in and out) or None (token ids only, text '').
    The routes read what they serve from `app.state`."""
    app = FastAPI(title="tenancy", lifespan=_lifespan)
    app.state.engine, app.state.tokenizer = engine, tokenizer
    app.state.model_name, app.state.max_model_len = model_name, max_model_len
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(APIError, _api_error)
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route("/v1/models", models, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    app.add_api_route("/v1/completions", completions, methods=["POST"])
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    import asyncio

    app.state.bridge = EngineThread(app.state.engine, asyncio.get_running_loop())
    app.state.bridge.start()
    yield
    app.state.bridge.stop()  # after uvicorn closed the connections: the engine thread ends


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0]
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    return error(f"{'.'.join(loc) or 'body'}: {first.get('msg')}", ".".join(loc) or None)


async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return error(str(exc), exc.param, exc.status)


async def health(request: Request):
    failed = request.app.state.bridge.error
    return error(failed, status=500) if failed else PlainTextResponse("")


async def models(request: Request) -> ModelList:
    state = request.app.state
    return ModelList(data=[ModelCard(id=state.model_name, max_model_len=state.max_model_len)])


async def metrics(request: Request) -> PlainTextResponse:
    s, name = request.app.state.bridge.stats, request.app.state.model_name
    rows = [("num_requests_running", "gauge", "requests in the running batch", s.running),
            ("num_requests_waiting", "gauge", "requests queued for admission", s.waiting),
            ("kv_cache_usage_perc", "gauge", "fraction of KV cache blocks in use", s.kv_usage),
            ("iterations_total", "counter", "engine iterations", s.iterations),
            ("generation_tokens_total", "counter", "output tokens sent", s.generation_tokens),
            ("request_success_total", "counter", "requests ended", s.finished)]
    text = "".join(f"# HELP tenancy:{n} {h}\n# TYPE tenancy:{n} {t}\ntenancy:{n}{{model_name=\"{name}\"}} {v}\n"
                   for n, t, h, v in rows)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def tokens_of(req: CompletionRequest, engine: LLMEngine, tokenizer) -> list[int]:
    try:
        prompt = req.prompts()
    except ValueError as e:
        raise APIError(str(e), "prompt") from None
    if isinstance(prompt, str):
        if tokenizer is None:
            raise APIError("this model has no tokenizer: send the prompt as token ids", "prompt")
        prompt = tokenizer.encode(prompt, add_special_tokens=False)
    if not prompt:
        raise APIError("the prompt is empty", "prompt")
    bad_ids = [t for t in prompt if not 0 <= t < engine.vocab_size]
    if bad_ids:
        raise APIError(f"token id {bad_ids[0]} is out of vocabulary (size {engine.vocab_size})", "prompt")
    return prompt


def _checked_prompt(req: CompletionRequest, state) -> list[int]:
    if req.model is not None and req.model != state.model_name:
        raise APIError(f"The model `{req.model}` does not exist.", "model", 404)
    prompt = tokens_of(req, state.engine, state.tokenizer)
    if len(prompt) + req.max_tokens > state.max_model_len:
        raise APIError(f"This model's maximum context length is {state.max_model_len} tokens. However, you "
                       f"requested {len(prompt) + req.max_tokens} tokens ({len(prompt)} in the prompt, "
                       f"{req.max_tokens} in the completion).", "max_tokens")
    return prompt


def _sampling(req: CompletionRequest, engine: LLMEngine) -> SamplingParams:
    """The request's sampling; what it leaves out is the engine's default."""
    cfg = engine.cfg
    return SamplingParams(req.max_tokens, cfg.temperature if req.temperature is None else req.temperature,
                          cfg.top_p if req.top_p is None else req.top_p,
                          cfg.top_k if req.top_k is None else max(req.top_k, 0), req.seed, req.ignore_eos)


async def completions(req: CompletionRequest, request: Request):
    state = request.app.state
    prompt = _checked_prompt(req, state)
    bridge: EngineThread = state.bridge
    try:
        stream = bridge.submit(prompt, _sampling(req, state.engine))
    except RuntimeError as e:  # the engine thread died: every request after it is a 500
        raise APIError(str(e), None, 500) from None
    pieces = _pieces(stream, bridge, state.tokenizer, req.stops())
    head = CompletionResponse(model=state.model_name, choices=[])
    if req.stream:
        include = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_sse(pieces, stream, head, len(prompt), include), media_type="text/event-stream")
    text, reason = "", None
    async for piece, reason in pieces:
        text += piece
    if bridge.error is not None:
        raise APIError(bridge.error, None, 500)
    if stream.seq.error not in (None, "aborted"):
        raise APIError(stream.seq.error, "prompt")
    n = stream.sent
    head.choices, head.usage = [Choice(text=text, finish_reason=reason)], Usage(
        prompt_tokens=len(prompt), completion_tokens=n, total_tokens=len(prompt) + n)
    return head


async def _pieces(stream: Stream, bridge: EngineThread, tokenizer, stops: list[str]) -> AsyncIterator[tuple[str, Optional[str]]]:
    """(text delta, finish reason or None) as tokens arrive; detokenized incrementally (a piece
    ending in a partial UTF-8 character waits for the next token); a stop string ends the request."""
    ids: list[int] = []
    sent = text = ""
    hold = max((len(s) for s in stops), default=1) - 1
    try:
        while (new := await stream.out.get()) is not None:
            ids += new
            text = tokenizer.decode(ids, skip_special_tokens=True) if tokenizer is not None else ""
            hit = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
            if hit >= 0:
                bridge.abort(stream)
                yield text[len(sent):hit], "stop"
                return
            if text.endswith("\ufffd"):
                continue
            ready = text[:len(text) - hold]  # a stop string may still complete over the held chars
            if len(ready) > len(sent):
                yield ready[len(sent):], None
                sent = ready
        seq = stream.seq
        rest = text[len(sent):] if ids else ""
        if seq.error is not None:
            yield rest, "abort"
        else:
            yield rest, "length" if len(seq.output_ids) >= seq.params.max_tokens else "stop"
    finally:  # the client left (or the stream ended): never leave the request running
        if not stream.seq.done:
            bridge.abort(stream)


async def _sse(pieces, stream: Stream, head: CompletionResponse, prompt_len: int,
               include_usage: bool) -> AsyncIterator[str]:
    """`data: {chunk}` per piece, the usage chunk (no choices) if asked, then `data: [DONE]`."""
    async for text, reason in pieces:
        chunk = head.model_copy(update={"choices": [Choice(text=text, finish_reason=reason)]})
        yield f"data: {chunk.model_dump_json()}\n\n"
    if include_usage:
        n = stream.sent
        usage = Usage(prompt_tokens=prompt_len, completion_tokens=n, total_tokens=prompt_len + n)
        yield f"data: {head.model_copy(update={'usage': usage}).model_dump_json()}\n\n"
    yield "data: [DONE]\n\n"
