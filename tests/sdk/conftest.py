"""A local cloud per SDK test module, and a proxy that proves nothing leaves loopback."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest

from local_cloud.cloud import LocalCloud
from local_cloud.sagemaker import RuntimeSettings


class _Recorder(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.server.seen.append(self.rfile.readline(4096).decode("latin-1").strip())  # type: ignore[attr-defined]
        self.wfile.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )


@pytest.fixture(scope="module")
def proxy() -> Iterator[tuple[str, list[str]]]:
    """An HTTP(S) proxy on loopback that answers 403 and remembers every request line."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    settings = RuntimeSettings(poll_interval_seconds=0.1, close_grace_seconds=1.0)
    with LocalCloud(state_dir=tmp_path_factory.mktemp("sdk"), runtime_settings=settings) as c:
        yield c
