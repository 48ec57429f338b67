"""A stand-in for nvidia-cuda-mps-control (tests only; stdlib only).

Like the real one: `-d` starts a control daemon in its own session that listens on
$CUDA_MPS_PIPE_DIRECTORY/control and writes a pid file there; it starts one "server" process
(which inherits its environment); without arguments the program is a client that sends the
commands read from stdin to the daemon and prints the answers. Clients are the live processes
whose environment names the same pipe directory (as a real client connects through it).

A process without CUDA_MPS_PIPE_DIRECTORY looks in /tmp/nvidia-mps, as the CUDA driver does.

Devices: the machine's GPUs are those of the fake NVML (tests/fake_pynvml, $FAKE_NVML_CONFIG; one
GPU without it). The server remaps the devices the daemon sees (its CUDA_VISIBLE_DEVICES: indices
in PCI bus order or UUID prefixes) to 0..n-1, so a client whose CUDA_VISIBLE_DEVICES names a device
that is not valid after remapping (an index >= n, a UUID the daemon does not see) fails to create
its context: it is never listed by get_client_list (the call log records it as rejected).

Every invocation is logged as a JSON line to $CUDA_MPS_LOG_DIRECTORY/calls.jsonl, and every
client list records the clients' CUDA_MPS_* and CUDA_VISIBLE_DEVICES variables there, for the tests.

Knobs (environment of `-d`): FAKE_MPS_DROP_CLIENT=1 leaves the highest client pid out of
get_client_list; FAKE_MPS_LEAK_SERVER=1 makes quit leave the server running;
FAKE_MPS_SERVER_OWN_ENV=1 starts the server without the daemon's CUDA_MPS_* environment;
FAKE_MPS_NEVER_READY=1 makes the daemon never open its socket.
"""
import json
import os
import socket
import subprocess
import sys
import time

DEFAULT_PIPE = "/tmp/nvidia-mps"
PIPE = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", DEFAULT_PIPE)
LOG = os.environ.get("CUDA_MPS_LOG_DIRECTORY", "/var/log/nvidia-mps")
SOCK = os.path.join(PIPE, "control")
ME = os.path.abspath(__file__)


def log(**rec):
    os.makedirs(LOG, exist_ok=True)
    with open(os.path.join(LOG, "calls.jsonl"), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), **rec}) + "\n")


def environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            items = f.read().split(b"\0")
    except OSError:
        return {}
    return dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def machine_gpus():
    path = os.environ.get("FAKE_NVML_CONFIG")
    if path:
        with open(path) as f:
            return [g["uuid"] for g in json.load(f).get("gpus", [])]
    return ["GPU-00000000-0000-0000-0000-000000000000"]


def select(visible, devices):
    """The devices CUDA_VISIBLE_DEVICES=`visible` keeps of `devices` (CUDA stops at an invalid entry)."""
    if visible is None:
        return list(devices)
    kept = []
    for entry in visible.split(","):
        entry = entry.strip()
        if entry.isdigit() and int(entry) < len(devices):
            kept.append(devices[int(entry)])
        elif entry.startswith("GPU-") and sum(d.startswith(entry) for d in devices) == 1:
            kept.append(next(d for d in devices if d.startswith(entry)))
        else:
            break
    return kept


def clients(visible):
    """(listed, rejected): processes using our pipe directory, split by whether their device
    selection is valid on the server's remapped devices."""
    listed, rejected = [], []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        env = environ(name)
        if env.get("CUDA_MPS_PIPE_DIRECTORY", DEFAULT_PIPE if env else None) != PIPE or ME in cmdline(name):
            continue
        if "multiprocessing.resource_tracker" in cmdline(name):  # inherits the env, never opens a CUDA context
            continue
        seen = {k: v for k, v in env.items() if k.startswith("CUDA_MPS_") or k == "CUDA_VISIBLE_DEVICES"}
        ok = bool(select(env.get("CUDA_VISIBLE_DEVICES"), visible))
        (listed if ok else rejected).append((int(name), seen))
    return sorted(listed), sorted(rejected)


def daemon():
    if os.environ.get("FAKE_MPS_NEVER_READY") == "1":
        while True:
            time.sleep(1)
    with open(os.path.join(PIPE, "nvidia-cuda-mps-control.pid"), "w") as f:
        f.write(str(os.getpid()))
    visible = select(os.environ.get("CUDA_VISIBLE_DEVICES"), machine_gpus())
    log(daemon_visible=visible)
    server_env = None
    if os.environ.get("FAKE_MPS_SERVER_OWN_ENV") == "1":
        server_env = {k: v for k, v in os.environ.items() if not k.startswith("CUDA_MPS_")}
    server = subprocess.Popen([sys.executable, ME, "--server"], stdin=subprocess.DEVNULL, env=server_env)
    default = 100.0
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(SOCK)
    srv.listen(8)
    while True:
        conn, _ = srv.accept()
        with conn:
            cmd = conn.makefile().readline().strip()
            words = cmd.split()
            answer = ""
            if cmd == "get_server_list":
                answer = f"{server.pid}\n"
            elif words[:1] == ["get_client_list"]:
                found, rejected = clients(visible) if words[1:] == [str(server.pid)] else ([], [])
                if os.environ.get("FAKE_MPS_DROP_CLIENT") == "1" and found:
                    found = found[:-1]
                log(clients={str(p): env for p, env in found}, rejected={str(p): env for p, env in rejected})
                answer = "".join(f"{p}\n" for p, _ in found)
            elif words[:1] == ["set_default_active_thread_percentage"]:
                default = float(words[1])
                log(default_active_thread_percentage=int(words[1]))
            elif cmd == "get_default_active_thread_percentage":
                answer = f"{default:.1f}\n"
            elif cmd == "quit":
                if os.environ.get("FAKE_MPS_LEAK_SERVER") != "1":
                    server.terminate()
                    server.wait()
                conn.sendall(b"")
                os.unlink(SOCK)
                os._exit(0)
            else:
                answer = f"unknown command {cmd}\n"
            conn.sendall(answer.encode())


def client():
    for line in sys.stdin.read().splitlines():
        if not line.strip():
            continue
        log(argv=sys.argv[1:], stdin=line.strip(), pipe=PIPE, log_dir=LOG)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(SOCK)
        except OSError:
            print("Cannot find MPS control daemon process", file=sys.stderr)
            sys.exit(1)
        with s:
            s.sendall((line.strip() + "\n").encode())
            s.shutdown(socket.SHUT_WR)
            sys.stdout.write(s.makefile().read())


def main():
    args = sys.argv[1:]
    if args == ["-d"]:
        log(argv=args, pipe=PIPE, log_dir=LOG)
        subprocess.Popen([sys.executable, ME, "--daemon"], start_new_session=True, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elif args == ["--daemon"]:
        daemon()
    elif args == ["--server"]:
        while True:
            time.sleep(1)
    else:
        client()


if __name__ == "__main__":
    main()
