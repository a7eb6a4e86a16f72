"""A real one-node SLURM cluster for the tests: Debian's ``slurm-wlm`` and ``munge``, configured and run in a
temporary folder (own munge key and socket, own ports, own state), torn down afterwards.

Job accounting: ``sacct`` needs ``slurmdbd`` and a MySQL/MariaDB server for its usual data. Without them, Slurm
22.05's ``sacct --completion`` reads the job-completion log (``JobCompType=jobcomp/filetxt``), which gets one
record each time a job ends *and* each time it is requeued; that is what :meth:`SlurmCluster.sacct` returns.
``scontrol show job`` adds the live view (state, reason, ``Restarts``) while the job is known to slurmctld.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from debian_support import apt_install

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sacct", "squeue", "scancel", "sinfo")
PACKAGES = ("slurm-wlm", "munge")
END_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
# the environment of the test process that must not leak into a job (a job is its own DDP world)
_NOT_INHERITED = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")


def _exe(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def ensure_installed() -> str | None:
    """Install slurm-wlm and munge with apt when missing; return why they cannot be had, or None."""
    return apt_install(PACKAGES, lambda: all(_exe(d) for d in DAEMONS), recommends=False)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(frozen=True)
class JobRecord:
    """One line of ``sacct --completion``: a run of the job that ended (or was requeued)."""

    job_id: str
    state: str
    start: str
    end: str
    exit_code: str


class SlurmCluster:
    """slurmctld + slurmd + munged on this host, all state under ``root``.

    ``cpus`` is what the node offers to jobs (``SlurmdParameters=config_overrides`` lets it differ from the
    host's cores). Requeued jobs wait ``cred_expire`` seconds before they may start again (Slurm's default is
    120 s; 10 s here).
    """

    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root = root
        self.cpus = cpus
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.logs = root / "log"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED and not k.startswith("SLURM_")}
        self.env["SLURM_CONF"] = str(self.conf)

    # --- life cycle -------------------------------------------------------------------------------------------
    def write_config(self) -> None:
        munge = self.root / "munge"
        for d in (munge, self.root / "state", self.root / "spool", self.logs):
            d.mkdir(parents=True, exist_ok=True)
        munge.chmod(0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ctld_port, d_port = _free_ports(2)
        # Job ids decide Lightning's default MASTER_PORT (15000 + the id's last 4 digits): start somewhere random
        # so that two clusters on one machine do not hand out the same ports.
        first_job = random.randint(1, 9) * 10000 + random.randint(1000, 8999)
        r = self.root
        self.conf.write_text(
            f"""# one-node test cluster written by tests/slurm_cluster.py
ClusterName=medimgtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}/munge.socket,cred_expire=10
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={r}/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmdParameters=config_overrides
FirstJobId={first_job}
KillWait=10
MinJobAge=600
InactiveLimit=0
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=2048 State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def start(self, timeout: float = 60) -> None:
        self.write_config()
        munge = self.root / "munge"
        self._spawn(
            "munged",
            [_exe("munged") or "munged", "-F", "--force", f"--socket={munge}/munge.socket",
             f"--key-file={munge}/munge.key", f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/seed",
             f"--log-file={self.logs}/munged.log"],
        )  # fmt: skip
        self._wait(lambda: (munge / "munge.socket").exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", [_exe("slurmctld") or "slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [_exe("slurmd") or "slurmd", "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait(self._node_idle, timeout, "the node did not become idle")

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.logs / f"{name}.stdout", "wb")  # noqa: SIM115 (closed with the process)
        self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)

    def _node_idle(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.diagnostics()}")
        out = self.run(["sinfo", "-h", "-N", "-o", "%t"], check=False).stdout.strip()
        return out == "idle"

    def _wait(self, ok: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            time.sleep(0.3)
        raise TimeoutError(f"{what} within {timeout:.0f} s\n{self.diagnostics()}")

    def stop(self) -> None:
        """Cancel what still runs, wait for it to end, then stop the daemons this cluster started."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run(["scancel", "--full", "--signal=KILL", "--user", "root"], check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.run(["squeue", "-h"], check=False).stdout.strip():
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

    # --- jobs ------------------------------------------------------------------------------------------------
    def run(self, cmd: list[str], check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **dict(kw.pop("env", None) or {})}  # type: ignore[call-overload]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, check=False, **kw)  # type: ignore[call-overload]
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr}\n{self.diagnostics()}")
        return proc  # type: ignore[no-any-return]

    def sbatch(self, args: Iterable[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> str:
        """Submit; return the job id."""
        proc = self.run(["sbatch", "--parsable", *args], env=env, cwd=cwd)
        return proc.stdout.strip().split(";")[0]

    def show_job(self, job: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (empty once slurmctld forgot the job)."""
        out = self.run(["scontrol", "show", "job", "-o", job], check=False).stdout.strip()
        fields: dict[str, str] = {}
        for token in out.split():
            key, sep, value = token.partition("=")
            if sep and key not in fields:
                fields[key] = value
        return fields

    def sacct(self, job: str) -> list[JobRecord]:
        fmt = "JobID,State,Start,End,ExitCode"
        out = self.run(["sacct", "--completion", "-j", job, "-n", "-P", "-o", fmt], check=False).stdout
        return [JobRecord(*line.split("|")[:5]) for line in out.splitlines() if line.count("|") >= 4]

    def wait_state(self, job: str, states: set[str], timeout: float, output: Path | None = None) -> dict[str, str]:
        """Poll until the job is in one of ``states``; fail with the job's output and the daemons' logs."""
        deadline = time.monotonic() + timeout
        info: dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.show_job(job)
            if info.get("JobState") in states:
                return info
            time.sleep(0.5)
        raise TimeoutError(
            f"job {job} not in {sorted(states)} after {timeout:.0f} s (now {info.get('JobState')}, "
            f"reason {info.get('Reason')})\n{self.diagnostics(job, output)}"
        )

    def wait_done(self, job: str, timeout: float, output: Path | None = None) -> dict[str, str]:
        return self.wait_state(job, END_STATES, timeout, output)

    def wait_until(
        self, ok: Callable[[], bool], timeout: float, what: str, job: str, output: Path | None = None
    ) -> None:
        """Poll ``ok`` while the job runs; fail early (with the logs) when the job ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():
                return
            state = self.show_job(job).get("JobState")
            if state in END_STATES:
                raise AssertionError(f"job {job} ended ({state}) before {what}\n{self.diagnostics(job, output)}")
            time.sleep(0.3)
        raise TimeoutError(f"no {what} after {timeout:.0f} s\n{self.diagnostics(job, output)}")

    def diagnostics(self, job: str | None = None, output: Path | None = None, lines: int = 60) -> str:
        """What a failing test prints: the job record, its output file, the daemons' logs (tails)."""
        parts: list[str] = []
        if job is not None:
            shown = self.run(["scontrol", "show", "job", job], check=False).stdout
            parts.append(f"--- scontrol show job {job}\n{shown}")
            parts.append(f"--- sacct --completion -j {job}\n{self.sacct(job)}")
        files = ([output] if output is not None else []) + [
            self.logs / "slurmctld.log",
            self.logs / "slurmd.log",
            self.logs / "slurmctld.stdout",
            self.logs / "slurmd.stdout",
            self.logs / "munged.log",
        ]
        for f in files:
            text = f.read_text(errors="replace").splitlines()[-lines:] if f.exists() else ["(missing)"]
            parts.append(f"--- {f} (last {lines} lines)\n" + "\n".join(text))
        return "\n".join(parts)
