"""A stand-in for Nsight Systems' `nsys` (tests only): `profile` runs the command and writes the
report file; `stats` writes a kernel summary CSV; `--version` prints a version line as nsys does.
Every other call is appended to $FAKE_NSYS_LOG."""
import json
import os
import subprocess
import sys


def main():
    args = sys.argv[1:]
    if args == ["--version"]:
        print("NVIDIA Nsight Systems version 2024.6.1.90-246135218283v0")
        return
    with open(os.environ["FAKE_NSYS_LOG"], "a") as f:
        f.write(json.dumps(args) + "\n")
    if args[0] == "profile":
        n = next(i for i, a in enumerate(args[1:]) if not a.startswith("--"))
        opts, command = args[1:1 + n], args[1 + n:]
        output = dict(o[2:].split("=", 1) for o in opts)["output"]
        code = subprocess.call(command)
        with open(output + ".nsys-rep", "w") as f:
            f.write("fake report\n")
        sys.exit(code)
    if args[0] == "stats":
        prefix = [a for a in args if a.startswith("--output=")][0].split("=", 1)[1]
        with open(prefix + "_cuda_gpu_kern_sum.csv", "w") as f:
            f.write("Time (%),Total Time (ns),Instances,Name\n100.0,12345,10,fake_gemm_kernel\n")
        sys.exit(0)
    sys.exit(2)


if __name__ == "__main__":
    main()
