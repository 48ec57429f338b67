#!/usr/bin/env bash
# Check every GPU path of tenancy on this machine and print a PASS/FAIL/SKIP table:
# CUDA event timing against the wall clock, MPS start/attach/stop, CUDA streams, the NVML
# monitor, Nsight Systems, and the pytest `gpu` tests. Tiny models: a few minutes at most.
# Run from the repository root on a machine with an NVIDIA GPU:   tools/gpu_check.sh
# Exit status: 0 when nothing failed.
set -uo pipefail
PY=${PYTHON:-python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tenancy-gpu-check.XXXXXX")
declare -a NAMES RESULTS NOTES

record() { NAMES+=("$1"); RESULTS+=("$2"); NOTES+=("$3"); }
check() {  # check NAME COMMAND...: PASS when the command succeeds; its last line is the note
  local name=$1; shift
  local log="$WORK/$(echo "$name" | tr ' /' '__').log"
  if "$@" >"$log" 2>&1; then record "$name" PASS "$(tail -n 1 "$log" | cut -c1-70)"
  else record "$name" FAIL "$(tail -n 1 "$log" | cut -c1-70) (log: $log)"; fi
}
scenario() {  # scenario FILE SHARING [extra yaml lines]
  cat >"$1" <<YAML
name: gpu-check-$2
device: cuda
sharing: $2
iterations: 30
warmup: 3
monitor_interval_ms: 20
tenants:
  - {name: bert, model: bert-base, size: tiny, batch: 8, seq: 128, mps: {active_thread_percentage: 50}}
  - {name: gpt2, model: distilgpt2, size: tiny, batch: 8, seq: 128, task: generate, new_tokens: 8}
YAML
}

check "GPU visible (NVML + CUDA torch)" $PY -c '
from tenancy import environment as e
g = e.nvml_gpus(); assert g, "NVML sees no GPU"; assert e.torch_has_cuda(), "torch has no CUDA"
print(g[0]["name"], g[0]["driver"], "compute mode", g[0]["compute_mode"])'

check "CUDA event timing vs wall clock" $PY -c '
import time, torch
from tenancy.timer import CudaTimer
x = torch.randn(4096, 4096, device="cuda", dtype=torch.float16); t = CudaTimer()
for _ in range(3): x @ x
torch.cuda.synchronize(); worst = 0
for _ in range(5):
    t0 = time.perf_counter(); t.start()
    for _ in range(20): x @ x
    (g,) = t.stop(); w = (time.perf_counter() - t0) * 1e3; worst = max(worst, abs(w - g) / w)
assert worst < 0.10, f"events and wall clock differ by {worst:.1%}"
print(f"worst difference {worst:.1%}")'

if command -v nvidia-cuda-mps-control >/dev/null; then
  scenario "$WORK/mps.yaml" mps
  check "MPS start/attach/stop" bash -c "$PY -m tenancy run $WORK/mps.yaml --out $WORK/mps >$WORK/mps.out 2>&1; $PY -c '
import json, sys; m = json.load(open(\"$WORK/mps/manifest.json\")); s = m[\"sharing\"]
assert m[\"status\"] == \"complete\", m.get(\"error\") or m[\"status\"]
a = s[\"attach\"][0]; assert a[\"servers\"] and not a[\"missing\"], a
assert s[\"stop\"][\"clean\"], s[\"stop\"]
print(\"server\", a[\"servers\"], \"clients\", sorted(a[\"tenants\"].values()), \"stopped clean\")'"
else
  record "MPS start/attach/stop" SKIP "nvidia-cuda-mps-control not on PATH"
fi

scenario "$WORK/streams.yaml" streams
check "CUDA streams" bash -c "$PY -m tenancy run $WORK/streams.yaml --out $WORK/streams >$WORK/streams.out 2>&1; $PY -c '
import json; m = json.load(open(\"$WORK/streams/manifest.json\"))
assert m[\"status\"] == \"complete\", m[\"status\"]; assert m[\"sharing\"][\"streams\"], m[\"sharing\"]
pids = {t[\"pid\"] for t in m[\"tenants\"] if t[\"phase\"] == \"shared\"}; assert len(pids) == 1
print(\"both tenants in pid\", pids.pop(), \"STP\", json.load(open(\"$WORK/streams/metrics.json\"))[\"stp\"])'"

check "NVML monitor (gpu.parquet)" $PY -c "
import json, pandas as pd
m = json.load(open('$WORK/streams/manifest.json'))['monitor']; assert m['enabled'], m
g = pd.read_parquet('$WORK/streams/gpu.parquet'); assert len(g) > 5 and g['mem_used_mib'].notna().all()
s = [x for x in json.load(open('$WORK/streams/metrics.json'))['gpu'] if x['launch'] == 'shared'][0]
print(len(g), 'rows; shared: util', round(s['gpu_util_mean_pct'] or -1), '% energy', s['energy_j'], 'J')"

if command -v nsys >/dev/null; then
  scenario "$WORK/nsys.yaml" timeslice
  check "Nsight Systems (--nsys)" bash -c "$PY -m tenancy run $WORK/nsys.yaml --nsys --out $WORK/nsys >$WORK/nsys.out 2>&1; $PY -c '
import json, pandas as pd; m = json.load(open(\"$WORK/nsys/manifest.json\"))
assert m[\"status\"] == \"complete\" and m[\"nsys\"].get(\"kernels\"), m.get(\"nsys\")
k = pd.read_csv(\"$WORK/nsys/nsys/kernels.csv\"); print(len(k), \"kernels; report\", m[\"nsys\"][\"report\"])'"
else
  record "Nsight Systems (--nsys)" SKIP "nsys not on PATH"
fi

check "pytest -m gpu" $PY -m pytest -q -m gpu -p no:cacheprovider tests
last=$((${#RESULTS[@]} - 1))
if [[ ${RESULTS[last]} == PASS && ${NOTES[last]} != *passed* ]]; then RESULTS[last]=SKIP; fi  # all skipped

printf '\n%-34s %-5s %s\n' CHECK RESULT NOTE
failed=0
for i in "${!NAMES[@]}"; do
  printf '%-34s %-5s %s\n' "${NAMES[i]}" "${RESULTS[i]}" "${NOTES[i]}"
  [[ ${RESULTS[i]} == FAIL ]] && failed=1
done
echo "logs and runs: $WORK"
exit $failed
