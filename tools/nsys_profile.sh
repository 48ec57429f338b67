#!/usr/bin/env bash
# Run any `tenancy run ...` command under Nsight Systems, the way `tenancy run --nsys` does:
# CUDA, NVTX and OS-runtime traces of the whole process tree, the report in the run directory
# (<out>/nsys/profile.nsys-rep) and the kernel summary as <out>/nsys/kernels.csv.
#
#   tools/nsys_profile.sh tenancy run scenarios/mps-pair.yaml --out results/mps-pair-nsys
#
# Without --out the run goes to results/nsys-<time>/. Needs Nsight Systems (`nsys` on PATH).
set -euo pipefail
if [[ $# -eq 0 ]]; then
  echo "usage: $0 tenancy run SCENARIO [options]" >&2; exit 2
fi
NSYS=${TENANCY_NSYS:-nsys}
if ! command -v "$NSYS" >/dev/null 2>&1; then
  echo "error: $NSYS not found: install Nsight Systems (https://developer.nvidia.com/nsight-systems) and put nsys on PATH" >&2
  exit 2
fi
args=("$@")
out=""
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --out) out="${args[i + 1]:-}" ;;
    --out=*) out="${args[i]#--out=}" ;;
  esac
done
if [[ -z "$out" ]]; then
  out="results/nsys-$(date +%Y%m%d-%H%M%S)"
  args+=(--out "$out")
fi
if [[ -e "$out" && -n "$(ls -A "$out")" ]]; then
  echo "error: $out already exists and is not empty; results are never overwritten" >&2; exit 2
fi
mkdir -p "$out/nsys"
out=$(cd "$out" && pwd)
export TENANCY_UNDER_NSYS="$out"  # the run writes into $out although nsys/ is already there
set +e
"$NSYS" profile --trace=cuda,nvtx,osrt --sample=none --cpuctxsw=none \
  --force-overwrite=true --output="$out/nsys/profile" "${args[@]}"
code=$?
set -e
if [[ -f "$out/nsys/profile.nsys-rep" ]]; then
  if "$NSYS" stats --report=cuda_gpu_kern_sum --format=csv --force-export=true --output="$out/nsys/stats" \
      "$out/nsys/profile.nsys-rep" >/dev/null; then
    csv=$(ls "$out"/nsys/stats*cuda_gpu_kern_sum*.csv 2>/dev/null | head -1)
    [[ -n "$csv" ]] && mv "$csv" "$out/nsys/kernels.csv" && echo "kernel summary: $out/nsys/kernels.csv"
  else
    echo "warning: nsys stats failed; open $out/nsys/profile.nsys-rep in the Nsight Systems GUI" >&2
  fi
  echo "report: $out/nsys/profile.nsys-rep"
else
  echo "warning: nsys wrote no report" >&2
fi
exit $code
