#!/usr/bin/env bash
# Check a GPU machine and write one Markdown file to attach to a bug report: `tenancy doctor`, the
# pytest `gpu` tests, and a small timed pair (tiny bert-base next to tiny distilgpt2) under each
# sharing mode. A few minutes. Run from the repository root:
#   tools/gpu_check.sh [REPORT.md]          # default gpu-check-<time>.md
#   DEVICE=cpu tools/gpu_check.sh           # rehearse on a machine without a GPU
# Exit status: 0 when nothing blocks and nothing failed.
set -uo pipefail
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cuda}
REPORT=${1:-gpu-check-$(date +%Y%m%d-%H%M%S).md}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tenancy-gpu-check.XXXXXX")
failed=0

section() { printf '\n## %s\n\n' "$1"; }
fenced() { echo '```'; cat; echo '```'; }

{
  echo "# tenancy GPU check"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), host $(hostname), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), device $DEVICE; logs in $WORK"

  section "tenancy doctor"
  $PY -m tenancy doctor --json >"$WORK/doctor.json" 2>"$WORK/doctor.err" || failed=1
  $PY - "$WORK/doctor.json" <<'PYEOF' || { failed=1; fenced <"$WORK/doctor.err"; }
import json, sys
report = json.load(open(sys.argv[1]))
print("| check | status | detail | fix |\n|---|---|---|---|")
for r in report["checks"]:
    print("| " + " | ".join(r[k].replace("|", "\\|") for k in ("name", "status", "detail", "fix")) + " |")
print("\nblocked" if report["blocked"] else "\nnothing blocks a run here")
PYEOF

  section "pytest -m gpu"
  $PY -m pytest -q -m gpu -p no:cacheprovider tests >"$WORK/pytest.log" 2>&1 || failed=1
  tail -n 15 "$WORK/pytest.log" | fenced

  section "A timed pair under each sharing mode"
  echo "| sharing | status | STP | ANTT | per tenant: slowdown, host share (shared) |"
  echo "|---|---|---|---|---|"
  for mode in timeslice mps streams; do
    if [[ $mode == mps ]] && ! command -v nvidia-cuda-mps-control >/dev/null; then
      echo "| mps | skipped: nvidia-cuda-mps-control not on PATH | | | |"; continue
    fi
    cat >"$WORK/$mode.yaml" <<YAML
name: gpu-check-$mode
device: $DEVICE
sharing: $mode
iterations: 30
warmup: 3
tenants:
  - {name: bert, model: bert-base, size: tiny, batch: 8, seq: 128}
  - {name: gpt2, model: distilgpt2, size: tiny, batch: 8, seq: 128, task: generate, new_tokens: 8}
YAML
    $PY -m tenancy run "$WORK/$mode.yaml" --out "$WORK/$mode" >"$WORK/$mode.log" 2>&1 || failed=1
    $PY - "$WORK/$mode" "$mode" "$WORK/$mode.log" <<'PYEOF' || failed=1
import json, sys
from pathlib import Path
import pandas as pd
run, mode, log = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if not (run / "metrics.json").exists():
    print(f"| {mode} | no results: see {log} | | | |")
    sys.exit(1)
m, status = json.loads((run / "metrics.json").read_text()), json.loads((run / "manifest.json").read_text())["status"]
s = pd.read_csv(run / "summary.csv")
per = "; ".join(f"{r.tenant} {r.slowdown:.2f}x, {r.host_share:.0%}" for r in s[s["phase"] == "shared"].itertuples())
fmt = lambda v: "" if v is None else f"{v:.2f}"
print(f"| {mode} | {status} | {fmt(m['stp'])} | {fmt(m['antt'])} | {per} |")
sys.exit(status != "complete")
PYEOF
  done
  echo
  echo "Slowdown = shared mean / solo mean; host share = host time issuing work / wall time per iteration."
} >"$REPORT"

echo "wrote $REPORT (logs and runs in $WORK)"
exit $failed
