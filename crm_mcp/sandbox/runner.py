"""Serve a simulator over real HTTP on loopback, from tests, benchmarks or the CLI.

Connectors must be exercised through their real HTTP stack (timeouts, resets, keep-alive), so the
simulators run in uvicorn on a socket of their own — in a daemon thread with its own event loop, so
a synchronous test, an async test and a CLI process can all use the same helper.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from types import TracebackType
from typing import Any

import anyio
import uvicorn


class SandboxServer:
    """Serves an ASGI app with uvicorn on 127.0.0.1 in a daemon thread with its own event loop."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxServer:
        """Bind (port 0 = any free port), start serving, and return once connections are accepted."""
        if self._thread is not None:
            return self
        # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
        # TCP, and without it every response waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        self._server = server
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # surfaced by start() below
                errors.append(exc)
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if errors or not self._thread.is_alive():
                raise RuntimeError(f"sandbox server failed to start: {errors[:1]}")
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox server did not start within 10 s")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop at once: in-flight slow/timeout requests are abandoned, not awaited."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        server.force_exit = True
        thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SandboxServer:
        await anyio.to_thread.run_sync(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)
