"""Free loopback ports for the servers the tests start, waiting for them to listen, and stopping them."""

from __future__ import annotations

import signal
import socket
import subprocess


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 30.0) -> None:
    """Block until something accepts connections on ``host:port``, or raise TimeoutError."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float, kill_wait_s: float) -> None:
    """SIGTERM and wait ``timeout_s`` (then SIGKILL and wait ``kill_wait_s``): a server's clean shutdown
    keeps its data, and a server that hangs in it must not hang the test session."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_wait_s)


def kill_process(proc: subprocess.Popen[bytes] | None, wait_s: float) -> None:
    """SIGKILL and reap, as a crash or power cut would end the server (no clean shutdown)."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait(wait_s)
