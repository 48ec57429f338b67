"""A stand-in for nvidia-smi's compute-mode commands (tests only; stdlib only).

`-i ID --query-gpu=compute_mode --format=csv,noheader` prints the mode ("Default",
"Exclusive_Process", "Prohibited"); `-i ID -c MODE` sets it. ID is an index in PCI bus order (NVML's,
not CUDA's) or a full UUID; an ID that names no GPU prints "No devices were found" and exits 6. The
GPUs and their modes are the fake NVML's ($FAKE_NVML_CONFIG, updated by -c so that NVML sees the
change; one GPU in Default mode without it). Every call's arguments are appended to $FAKE_SMI_LOG.
"""
import json
import os
import sys

NAMES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}


def main():
    args = sys.argv[1:]
    with open(os.environ["FAKE_SMI_LOG"], "a") as f:
        f.write(" ".join(args) + "\n")
    path = os.environ.get("FAKE_NVML_CONFIG")
    config = json.load(open(path)) if path else {"gpus": [{"uuid": "GPU-00000000-0000-0000-0000-000000000000"}]}
    gpus = config["gpus"]
    ident = args[args.index("-i") + 1] if "-i" in args else "0"
    found = [g for i, g in enumerate(gpus) if ident in (str(i), g["uuid"])]
    if not found:
        print("No devices were found")
        sys.exit(6)
    gpu = found[0]
    if "--query-gpu=compute_mode" in args:
        print(NAMES[gpu.get("compute_mode", 0)])
    elif "-c" in args:
        mode = args[args.index("-c") + 1].upper()
        gpu["compute_mode"] = {v.upper(): k for k, v in NAMES.items()}[mode]
        if path:
            with open(path, "w") as f:
                json.dump(config, f)
        print(f"Set compute mode to {mode} for GPU {gpu['uuid']}.")
    else:
        sys.exit(2)


if __name__ == "__main__":
    main()
