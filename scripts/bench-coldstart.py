"""Cold start of a bare `workerd serve`, for scripts/bench.sh.

    bench-coldstart.py RUNS PORT -- CMD...

Runs CMD (a `workerd serve` of a config listening on 127.0.0.1:PORT) RUNS
times, one after the other. Each time it measures the wall-clock time from
spawning the process to the first `200` answer to `GET /healthz` (polled
every millisecond on a fresh connection), then stops the process. Prints one
JSON object: {"ms": [...]}.

The process is started in its own session and always stopped here (also
when this script is interrupted or terminated), so nothing outlives it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

TIMEOUT_S = 30.0


def first_ok(port: int) -> bool:
    """Whether GET /healthz answers 200 right now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            status = sock.recv(64)
            return status.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def port_taken(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def main() -> None:
    runs, port, sep, *cmd = sys.argv[1:]
    runs, port = int(runs), int(port)
    if sep != "--" or not cmd or not 1 <= runs <= 20 or not 1024 <= port <= 65535:
        sys.exit("usage: bench-coldstart.py RUNS(1..20) PORT -- CMD...")
    # SIGTERM unwinds like Ctrl-C, through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    times = []
    for _ in range(runs):
        if port_taken(port):
            sys.exit(f"port {port} is taken")
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            while not first_ok(port):
                if proc.poll() is not None:
                    sys.exit(f"{cmd[0]} exited with {proc.returncode} before answering")
                if time.perf_counter() - t0 > TIMEOUT_S:
                    sys.exit(f"no 200 on :{port}/healthz after {TIMEOUT_S:.0f} s")
                time.sleep(0.001)
            times.append((time.perf_counter() - t0) * 1000)
        finally:
            stop(proc)
    print(json.dumps({"ms": times}))


if __name__ == "__main__":
    main()
