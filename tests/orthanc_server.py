"""A real Orthanc PACS for the tests: Debian's ``orthanc`` and ``orthanc-dicomweb`` (installed with apt when
missing), run by :class:`medimg.pacs.local_orthanc.LocalOrthanc` -- 127.0.0.1, free ports, its own storage
folder, HTTP authentication on, medimg registered as a DICOM modality, unknown calling AE titles refused.

:class:`SwallowingProxy` is the PACS of dicomweb-client#42: it answers 200 to every STOW-RS request without
storing anything and passes every other request to the real Orthanc -- only a query-back can catch it.
"""

from __future__ import annotations

import contextlib
import http.server
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from debian_support import apt_install

from medimg.pacs.local_orthanc import MEDIMG_AE, PACKAGES, PACS_AE, USER, LocalOrthanc, free_ports, why_unavailable

__all__ = [
    "MEDIMG_AE",
    "PACS_AE",
    "USER",
    "Orthanc",
    "SwallowingProxy",
    "ensure_installed",
    "free_ports",
    "running_orthanc",
]

#: The launcher is medimg's own (a user feature: :mod:`medimg.pacs.local_orthanc`); the tests add apt.
Orthanc = LocalOrthanc


@contextlib.contextmanager
def running_orthanc(prefix: str = "medimg-orthanc-") -> Iterator[LocalOrthanc]:
    """A started Orthanc in a temporary storage folder, stopped and removed after; skips the test with the reason
    when apt cannot install it."""
    why = ensure_installed()
    if why:
        pytest.skip(why)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server = Orthanc(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def ensure_installed() -> str | None:
    """Install orthanc and orthanc-dicomweb with apt when missing; return why they cannot be had, or None."""
    return apt_install(PACKAGES, lambda: why_unavailable() is None, recommends=False)


class SwallowingProxy:
    """An HTTP front of ``target`` that answers 200 (empty body) to every POST and forwards everything else."""

    def __init__(self, target: str) -> None:
        self.target = target
        handler = self._handler()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        target = self.target

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep the test output clean
                pass

            def do_POST(self) -> None:  # http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                elif self.headers.get("Transfer-Encoding") == "chunked":
                    while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                        self.rfile.read(size + 2)
                    self.rfile.readline()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                req = urllib.request.Request(target + self.path, headers=dict(self.headers.items()))
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, headers, body = resp.status, resp.headers, resp.read()
                except urllib.error.HTTPError as err:
                    status, headers, body = err.code, err.headers, err.read()
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
