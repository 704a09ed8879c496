"""A private ``redis-server`` on a loopback port, for the tests and the benchmarks (never for production).

One place that knows how to start one: a free port, no persistence unless asked, ready once it answers
``PING`` (a server still loading its data answers ``-LOADING``, which is not ready) and ``INFO`` names its
own process (not another server that already held the port), stopped with SIGTERM.

Example:
    >>> with LocalRedis(tmp_path) as server:
    ...     redis.Redis.from_url(server.url).ping()
    True
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

# No RDB snapshots and no AOF by default: a throw-away server; ``extra`` arguments come after and win.
DEFAULT_ARGS: tuple[str, ...] = ("--save", "", "--appendonly", "no")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(port: int, timeout_s: float = 0.5) -> bool:
    """True when a server on ``127.0.0.1:port`` answers ``PING`` with ``PONG``."""
    return _server_pid(port, timeout_s) is not None


def _server_pid(port: int, timeout_s: float = 0.5) -> int | None:
    """The ``process_id`` of the server on ``port`` once it answers ``PING`` with ``PONG``, else None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
            s.sendall(b"PING\r\nINFO server\r\n")
            data = b""
            while b"process_id:" not in data or not data.endswith(b"\r\n\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    if not data.startswith(b"+PONG\r\n"):
        return None  # e.g. -LOADING: not ready yet
    for line in data.split(b"\r\n"):
        if line.startswith(b"process_id:"):
            return int(line.split(b":", 1)[1])
    return None


def start_redis(port: int, workdir: Path | str, *extra: str, timeout_s: float = 10.0) -> subprocess.Popen[bytes]:
    """Starts ``redis-server`` on ``127.0.0.1:port`` with its files in ``workdir``; returns once it answers PING.

    Args:
        port: The port (e.g. from :func:`free_port`; reuse one to restart a server in place).
        workdir: Its ``--dir`` (created if missing).
        *extra: More server arguments, e.g. ``"--appendonly", "yes"``.
        timeout_s: How long to wait for the first ``PONG``.

    Raises:
        RuntimeError: ``redis-server`` is not installed, or did not answer within ``timeout_s`` (then it is
            killed).
    """
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: run `make setup`")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), *DEFAULT_ARGS, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _server_pid(port) == proc.pid:  # not another server that holds the port
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"redis-server on port {port} did not answer PING within {timeout_s:g} s")


def stop_redis(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LocalRedis:
    """A context manager around :func:`start_redis` and :func:`stop_redis` on a free (or given) port.

    Example:
        >>> with LocalRedis(workdir, "--appendonly", "yes") as server:
        ...     print(server.url)
        redis://127.0.0.1:40123/0
    """

    def __init__(self, workdir: Path | str, *extra: str, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.extra = extra
        self.port = port if port is not None else free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedis:
        self.proc = start_redis(self.port, self.workdir, *self.extra)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_redis(self.proc)
            self.proc = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
