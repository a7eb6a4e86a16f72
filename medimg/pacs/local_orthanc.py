"""A throwaway local Orthanc PACS (Debian ``orthanc`` + ``orthanc-dicomweb``) on 127.0.0.1 with authentication on,
for trying ``medimg pacs`` / ``medimg listen`` without the hospital's PACS, and for medimg's own tests.

It runs as a subprocess on free ports with its own storage folder and JSON configuration, configured as a
hospital research PACS is: HTTP authentication on (one user with a random password), the DICOMweb plugin at
``/dicom-web/``, a DICOM port whose called AE title is checked, and medimg's AE title registered as a modality
(host 127.0.0.1, ``scp_port``, for C-MOVE). Unknown calling AE titles are refused (every ``DicomAlwaysAllow*`` is
off)::

    with LocalOrthanc(tmp) as orthanc:          # starts it; stopped on exit
        orthanc.use_credentials()               # MEDIMG_PACS_LOCAL_USER / _PASSWORD for this process
        remote = connect(orthanc.pacs(), "dicomweb")

:meth:`LocalOrthanc.stop` then :meth:`LocalOrthanc.start` restarts it on the same storage and ports (what a PACS
reboot looks like to a client); :meth:`LocalOrthanc.kill` is a crash. Nothing is installed here: when the binary
or the plugin is missing, :func:`why_unavailable` says so (``apt-get install orthanc orthanc-dicomweb``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from types import TracebackType
from typing import Any

from medimg.pacs.config import Pacs

__all__ = ["MEDIMG_AE", "PACKAGES", "PACS_AE", "USER", "LocalOrthanc", "free_ports", "why_unavailable"]

PACKAGES = ("orthanc", "orthanc-dicomweb")
BINARY = "Orthanc"  # Debian installs it as /usr/sbin/Orthanc
#: Where Debian's orthanc-dicomweb puts the plugin (a symlink to /usr/lib/orthanc/libOrthancDicomWeb.so.*).
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
PACS_AE, MEDIMG_AE, USER = "ORTHANC", "MEDIMG", "medimg"


def orthanc_binary() -> str | None:
    return shutil.which(BINARY, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def dicomweb_plugin() -> str | None:
    for folder in PLUGIN_DIRS:
        for path in sorted(Path(folder).glob("libOrthancDicomWeb.so*")) if Path(folder).is_dir() else []:
            return str(path)
    return None


def why_unavailable() -> str | None:
    """None when Orthanc and its DICOMweb plugin are installed, else one line saying what to install."""
    if orthanc_binary() is not None and dicomweb_plugin() is not None:
        return None
    return "Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalOrthanc:
    """One Orthanc under ``root``: :meth:`start`, :meth:`stop`, and the REST calls that look inside it."""

    def __init__(self, root: str | os.PathLike[str], name: str = "local") -> None:
        self.root, self.name = Path(root), name
        self.password = secrets.token_urlsafe(16)
        self.http_port, self.dicom_port, self.scp_port = free_ports(3)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.root / "orthanc.log"

    def __enter__(self) -> LocalOrthanc:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def pacs(self) -> Pacs:
        """This Orthanc as a :class:`~medimg.pacs.config.Pacs` (DICOMweb and DIMSE; C-MOVE to ``scp_port``)."""
        return Pacs(name=self.name, dicomweb=self.dicomweb_url, host="127.0.0.1", port=self.dicom_port,
                    ae_title=PACS_AE, calling_ae=MEDIMG_AE, receive_port=self.scp_port)  # fmt: skip

    def config_toml(self) -> str:
        """This Orthanc as an entry of medimg's PACS config file (:mod:`medimg.pacs.config`; no credentials)."""
        p = self.pacs()
        return (
            f'[{self.name}]\ndicomweb = "{p.dicomweb}"\nhost = "{p.host}"\nport = {p.port}\nae_title = "{p.ae_title}"\n'
            f'calling_ae = "{p.calling_ae}"\nreceive_port = {p.receive_port}\n'
        )

    def credentials_env(self) -> dict[str, str]:
        """The environment variables that give medimg this Orthanc's user and password
        (``MEDIMG_PACS_<NAME>_USER`` / ``_PASSWORD``, :meth:`medimg.pacs.config.Pacs.credentials`)."""
        prefix = "MEDIMG_PACS_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper()) + "_"
        return {f"{prefix}USER": USER, f"{prefix}PASSWORD": self.password}

    def use_credentials(self) -> None:
        """Put the credentials in this process's environment (:meth:`credentials_env`)."""
        os.environ.update(self.credentials_env())

    def write_config(self) -> Path:
        (self.root / "storage").mkdir(parents=True, exist_ok=True)
        config = {
            "Name": f"medimg-{self.name}",
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
        """Start (or restart, on the same storage and ports) and wait until the REST API answers."""
        config = self.write_config()
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([orthanc_binary() or BINARY, str(config)], stdout=out, stderr=out)
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
        """Stop it (SIGTERM, then SIGKILL after 20 s); the storage stays for a later :meth:`start`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Stop it the hard way (SIGKILL: a crash or power cut, mid-request)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)

    def diagnostics(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"

    # --- looking inside, through Orthanc's own REST API ---------------------------------------------------------
    def rest(self, path: str, method: str = "GET", data: bytes | None = None) -> Any:
        """Orthanc's REST API as the registered user; the decoded JSON answer (None when empty)."""
        token = b64encode(f"{USER}:{self.password}".encode()).decode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def upload(self, files: list[Path]) -> None:
        """Store files the way a modality's archive import would (REST ``POST /instances``)."""
        for f in files:
            self.rest("/instances", "POST", Path(f).read_bytes())

    def instances(self) -> list[str]:
        """Orthanc's ids of every instance it holds."""
        return list(self.rest("/instances"))

    def count(self) -> int:
        """How many instances it holds (REST ``/statistics``)."""
        return int(self.rest("/statistics")["CountInstances"])

    def sop_uids(self) -> list[str]:
        """SOP Instance UIDs of every instance held, one entry per stored instance."""
        found = self.rest(
            "/tools/find", "POST", json.dumps({"Level": "Instance", "Query": {}, "Expand": True}).encode()
        )
        return [i["MainDicomTags"]["SOPInstanceUID"] for i in found]

    def series(self) -> list[dict[str, object]]:
        """Every series held: Orthanc's expanded series records (``MainDicomTags``, ``Instances``)."""
        return list(self.rest("/series?expand"))

    def clear(self) -> None:
        """Delete every patient (and so everything) stored."""
        for pid in self.rest("/patients"):
            self.rest(f"/patients/{pid}", "DELETE")
