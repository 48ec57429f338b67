"""Build the engine, bind the port, run uvicorn until SIGINT/SIGTERM.

The socket is bound here, before uvicorn starts, so that a port in use is a one-line error
(exit 2) and `--port 0` can print the port it got. Text needs a tokenizer: the weights folder's,
or for random weights the byte-level one of hf_folder (any text round-trips, every id decodes).
uvicorn re-raises the signal that stopped it once the connections are closed; `tenancy`'s main
turns it into exit 130 like every other interrupted command.
"""
from __future__ import annotations

import socket

import click

from tenancy.core.errors import TenancyError
from tenancy.serving.config import ServingConfig

DEFAULT_MAX_LEN = 4096  # a KV pool and a position check sized for this unless --max-model-len


def load_tokenizer(cfg: ServingConfig, vocab_size: int):
    if cfg.weights == "random":
        from tenancy.models.hf_folder import byte_tokenizer

        return byte_tokenizer(vocab_size)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(cfg.weights)
    except (OSError, ValueError):  # a folder without a tokenizer: token-id prompts only
        return None


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise TenancyError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def run_server(cfg: ServingConfig, device: str) -> None:
    try:
        import uvicorn
    except ImportError:
        raise TenancyError("--http needs the serve extra: pip install 'tenancy[serve]'") from None

    from tenancy.models import zoo
    from tenancy.serving.engine import LLMEngine
    from tenancy.serving.http.app import create_app
    from tenancy.serving.models import max_model_len

    if cfg.engine != "iteration":
        raise TenancyError(f"--http serves the iteration engine; got engine: {cfg.engine}")
    problem = zoo.weights_problem(cfg.weights)
    if problem:
        raise TenancyError(problem)
    sock = bind(cfg.http.host, cfg.http.port)
    hf = zoo.build(cfg.model, cfg.size, cfg.dtype_on(device), device, cfg.weights, cfg.seed)
    limit = max_model_len(hf.config) or DEFAULT_MAX_LEN
    max_len = min(cfg.http.max_model_len or min(limit, DEFAULT_MAX_LEN), limit)
    try:
        engine = LLMEngine(hf, cfg, max_seq_len=max_len)
    except ValueError as e:
        raise TenancyError(" ".join(str(e).split())[:300]) from None
    engine.warmup()
    name = cfg.http.served_model_name or (cfg.weights if cfg.weights != "random" else cfg.model)
    app = create_app(engine, load_tokenizer(cfg, engine.vocab_size), name, max_len)
    host, port = sock.getsockname()[:2]
    click.echo(f"serving {name} ({engine.runner.num_blocks} KV blocks of {cfg.block_size}, max_model_len "
               f"{max_len}) at http://{host}:{port}/v1", err=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
    if not server.started:
        raise TenancyError(f"the HTTP server on {host}:{port} did not start")
