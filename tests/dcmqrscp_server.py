"""DCMTK's ``dcmqrscp`` (Debian ``dcmtk``) as a second, DIMSE-only archive for the tests.

Orthanc 1.10 (Debian bookworm) answers a C-MOVE to an unknown destination with 0xC000 "Unable to process";
dcmqrscp answers what the standard names, 0xA801 "Move Destination unknown" -- the refusal of pynetdicom#358.
It runs in its default mode, one forked child per association (DCMTK 3.6.7's ``--single-process`` mode
crashes after the first association here). Its configuration (DCMTK's ``dcmqrcnf.txt``) is written in a
temporary folder: one storage area, open to any calling AE title, and a host table that knows only medimg's AE
title.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from debian_support import apt_install
from orthanc_server import free_ports

AE_TITLE = "DCMQRSCP"


def ensure_installed() -> str | None:
    return apt_install(["dcmtk"], lambda: shutil.which("dcmqrscp") is not None, recommends=False)


class DcmQrScp:
    """dcmqrscp on 127.0.0.1 with its database under ``root``; ``known`` = (AE title, port) it may move to."""

    def __init__(self, root: Path, known: tuple[str, int]) -> None:
        self.root = root
        self.port = free_ports(1)[0]
        self.known = known
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        storage = self.root / "db"
        storage.mkdir(parents=True, exist_ok=True)
        conf = self.root / "dcmqrscp.cfg"
        ae, port = self.known
        conf.write_text(f"""NetworkTCPPort = {self.port}
MaxPDUSize = 16384
MaxAssociations = 16

HostTable BEGIN
medimg = ({ae}, 127.0.0.1, {port})
HostTable END

VendorTable BEGIN
"medimg" = medimg
VendorTable END

AETable BEGIN
{AE_TITLE} {storage} RW (200, 1024mb) ANY
AETable END
""")
        log = open(self.root / "dcmqrscp.log", "wb")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(["dcmqrscp", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dcmqrscp exited with {self.proc.returncode}: {self.diagnostics()}")
            if self._echo():
                return
            time.sleep(0.2)
        raise TimeoutError(f"dcmqrscp did not listen within {timeout:.0f} s: {self.diagnostics()}")

    def _echo(self) -> bool:
        """A C-ECHO: the server answers DICOM, not only TCP."""
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification

        ae = AE("PROBE")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", self.port, ae_title=AE_TITLE)
        if not assoc.is_established:
            return False
        assoc.send_c_echo()
        assoc.release()
        return True

    def diagnostics(self) -> str:
        log = self.root / "dcmqrscp.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
