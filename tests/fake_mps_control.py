"""A stand-in for nvidia-cuda-mps-control (tests only; stdlib only).

Like the real one: `-d` starts a control daemon in its own session that listens on
$CUDA_MPS_PIPE_DIRECTORY/control and writes a pid file there; it starts one "server" process
(which inherits its environment); without arguments the program is a client that sends the
commands read from stdin to the daemon and prints the answers. Clients are the live processes
whose environment names the same pipe directory (as a real client connects through it).

Every invocation is logged as a JSON line to $CUDA_MPS_LOG_DIRECTORY/calls.jsonl, and every
client list records the clients' CUDA_MPS_* variables there, for the tests to check.

Knobs (environment of `-d`): FAKE_MPS_DROP_CLIENT=1 leaves the highest client pid out of
get_client_list; FAKE_MPS_LEAK_SERVER=1 makes quit leave the server running;
FAKE_MPS_NEVER_READY=1 makes the daemon never open its socket.
"""
import json
import os
import socket
import subprocess
import sys
import time

PIPE = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
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


def clients():
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        env = environ(name)
        if env.get("CUDA_MPS_PIPE_DIRECTORY") == PIPE and ME not in cmdline(name):
            out.append((int(name), {k: v for k, v in env.items() if k.startswith("CUDA_MPS_")}))
    return sorted(out)


def daemon():
    if os.environ.get("FAKE_MPS_NEVER_READY") == "1":
        while True:
            time.sleep(1)
    with open(os.path.join(PIPE, "nvidia-cuda-mps-control.pid"), "w") as f:
        f.write(str(os.getpid()))
    server = subprocess.Popen([sys.executable, ME, "--server"], stdin=subprocess.DEVNULL)
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
                found = clients() if words[1:] == [str(server.pid)] else []
                if os.environ.get("FAKE_MPS_DROP_CLIENT") == "1" and found:
                    found = found[:-1]
                log(clients={str(p): env for p, env in found})
                answer = "".join(f"{p}\n" for p, _ in found)
            elif words[:1] == ["set_default_active_thread_percentage"]:
                log(default_active_thread_percentage=int(words[1]))
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
