"""A real Orthanc PACS for the tests: Debian's ``orthanc`` and ``orthanc-dicomweb``, run as a subprocess on
127.0.0.1 with free ports, its own storage folder and JSON configuration, torn down afterwards.

The configuration is the one a hospital research PACS has: HTTP authentication on (one registered user with a
random password), the DICOMweb plugin at ``/dicom-web/``, a DICOM port whose AE title is checked, and medimg's
AE title registered as a modality (host 127.0.0.1, the port of the test's own storage SCP, for C-MOVE). Unknown
calling AE titles are refused (every ``DicomAlwaysAllow*`` is off), so "unknown AE" is a real refusal.

:class:`SwallowingProxy` is the PACS of dicomweb-client#42: it answers 200 to every STOW-RS request without
storing anything and passes every other request to the real Orthanc -- only a query-back can catch it.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

from debian_support import apt_install

PACKAGES = ("orthanc", "orthanc-dicomweb")
BINARY = "Orthanc"  # Debian installs it as /usr/sbin/Orthanc
#: Where Debian's orthanc-dicomweb puts the plugin (a symlink to /usr/lib/orthanc/libOrthancDicomWeb.so.*).
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
PACS_AE, MEDIMG_AE, USER = "ORTHANC", "MEDIMG", "medimg"


def _exe() -> str | None:
    return shutil.which(BINARY, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def dicomweb_plugin() -> str | None:
    for folder in PLUGIN_DIRS:
        for path in sorted(Path(folder).glob("libOrthancDicomWeb.so*")) if Path(folder).is_dir() else []:
            return str(path)
    return None


def ensure_installed() -> str | None:
    """Install orthanc and orthanc-dicomweb with apt when missing; return why they cannot be had, or None."""
    return apt_install(PACKAGES, lambda: _exe() is not None and dicomweb_plugin() is not None, recommends=False)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class Orthanc:
    """One Orthanc under ``root``: ``start()``, ``stop()``, and the REST calls the tests use to look inside."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.password = secrets.token_urlsafe(16)
        self.http_port, self.dicom_port, self.scp_port = free_ports(3)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def write_config(self) -> Path:
        (self.root / "storage").mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "medimg-test",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "storage"),
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: self.password},
            "DicomServerEnabled": True,
            "DicomAet": PACS_AE,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomModalities": {"medimg": {"AET": MEDIMG_AE, "Host": "127.0.0.1", "Port": self.scp_port}},
            "Plugins": [dicomweb_plugin()],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{self.http_port}"},
            "StableAge": 1,
            "HttpTimeout": 30,
        }
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout: float = 60) -> None:
        config = self.write_config()
        out = open(self.log, "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen([_exe() or BINARY, str(config)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}\n{self.diagnostics()}")
            try:
                self.rest("/system")
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        raise TimeoutError(f"Orthanc did not answer /system within {timeout:.0f} s\n{self.diagnostics()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def diagnostics(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"

    # --- looking inside, through Orthanc's own REST API ---------------------------------------------------------
    def rest(self, path: str, method: str = "GET", data: bytes | None = None) -> object:
        token = b64encode(f"{USER}:{self.password}".encode()).decode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def upload(self, files: list[Path]) -> None:
        """Store files the way a modality's archive import would (REST ``POST /instances``)."""
        for f in files:
            self.rest("/instances", "POST", f.read_bytes())

    def instances(self) -> list[str]:
        """Orthanc's ids of every instance it holds."""
        return list(self.rest("/instances"))  # type: ignore[call-overload]

    def sop_uids(self) -> list[str]:
        """SOP Instance UIDs of every instance held, one entry per stored instance."""
        found = self.rest(
            "/tools/find", "POST", json.dumps({"Level": "Instance", "Query": {}, "Expand": True}).encode()
        )
        return [i["MainDicomTags"]["SOPInstanceUID"] for i in found]  # type: ignore[union-attr]

    def clear(self) -> None:
        """Delete every patient (and so everything) stored."""
        for pid in self.rest("/patients"):  # type: ignore[union-attr]
            self.rest(f"/patients/{pid}", "DELETE")


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
