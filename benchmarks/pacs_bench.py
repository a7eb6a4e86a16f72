"""Pulling a CT study from a PACS and pushing a SEG to it: MB/s over DICOMweb and DIMSE against Orthanc's own ZIP.

    .venv/bin/python benchmarks/pacs_bench.py [--size 512] [--slices 300] [--segments 10] [--repeats 1] [--update-md]

Starts a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``, HTTP authentication on, as
``tests/orthanc_server.py`` configures it) on 127.0.0.1, stores a CT series of ``--slices`` axial slices of
``--size``^2 (int16, uncompressed), then times, interleaved, each into an empty folder:

* ``medimg pacs pull --via dicomweb`` (WADO-RS, dicomweb-client), ``--via get`` (C-GET, pynetdicom);
* the anchor: Orthanc's own ZIP archive of the study (REST ``GET /studies/{id}/archive``), downloaded and
  unpacked to disk -- what a user does by hand in Orthanc Explorer;

and pushes a BINARY SEG of ``--segments`` classes on that grid (``--segments`` x ``--slices`` frames) with
verification, over STOW-RS and C-STORE (the SEG is deleted from Orthanc between rounds). MB/s counts the bytes
of the DICOM files on disk. Target (issue 28): each pull at least 0.7x the ZIP's rate.

Then ``medimg listen`` (:class:`medimg.pacs.listen.Listener`, in this process) with the demo's model exported to
ONNX (``medimg demo``'s ``outputs/demo/model.onnx``; trained and exported first when missing) on ``--threads``
CPU threads: the demo's held-out series is sent to it by C-STORE, and the time from the last instance's C-STORE
answer to the SEG and SR verified on Orthanc (STOW-RS + query-back) is measured, ``--idle`` included (the
listener's "series complete" wait). Target (issue 28): under 60 s on 2 CPU cores. ``--only listener`` runs just
that part (and does not touch BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from base64 import b64encode
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _report import race, update_section
from orthanc_server import MEDIMG_AE, PACS_AE, USER, Orthanc, ensure_installed

from medimg.io import Volume
from medimg.io.derived import write_seg
from medimg.io.dicom.write import write_series
from medimg.pacs import connect, load_pacs
from medimg.pacs.listen import Listener, SeriesOutcome
from medimg.pacs.pull import pull
from medimg.pacs.push import push


def _ct(size: int, slices: int) -> Volume:
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1500, size=(size, size, slices), dtype=np.int16)
    return Volume(arr, np.diag([0.7, 0.7, 1.0, 1.0]))


def _mask(shape: tuple[int, ...], segments: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    for s in range(segments):
        lo = [int(n * (0.05 + 0.08 * s)) for n in shape]
        mask[lo[0] : lo[0] + shape[0] // 10, lo[1] : lo[1] + shape[1] // 10, lo[2] : lo[2] + max(shape[2] // 4, 1)] = (
            s + 1
        )
    return mask


def _zip_pull(orthanc: Orthanc, study_uid: str, out: Path) -> None:
    study_id = orthanc.rest("/tools/lookup", "POST", study_uid.encode())[0]["ID"]  # type: ignore[index]
    req = urllib.request.Request(f"{orthanc.url}/studies/{study_id}/archive")
    req.add_header("Authorization", "Basic " + b64encode(f"{USER}:{orthanc.password}".encode()).decode())
    with urllib.request.urlopen(req, timeout=600) as resp:
        data = resp.read()
    zipfile.ZipFile(io.BytesIO(data)).extractall(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--segments", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--demo", default="outputs/demo", help="the demo's output folder (model.onnx, dicom/)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of the listener's model")
    ap.add_argument("--idle", type=float, default=2.0, help="the listener's series-complete wait (s)")
    ap.add_argument("--only", choices=("transfer", "listener"), help="run one part only")
    ap.add_argument("--update-md", action="store_true")
    args = ap.parse_args()
    why = ensure_installed()
    if why:
        raise SystemExit(why)
    rows: list[tuple[str, float, float]] = []
    seg_mb, listened = 0.0, ""
    with tempfile.TemporaryDirectory(prefix="medimg-pacs-bench-") as tmp:
        root = Path(tmp)
        orthanc = Orthanc(root / "orthanc")
        orthanc.start()
        try:
            if args.only != "listener":
                rows, seg_mb = _bench(orthanc, root, args)
            if args.only != "transfer":
                listened = _listener(orthanc, root, args)
        finally:
            orthanc.stop()
    if rows:
        _report(rows, seg_mb, args, listened)
    else:
        print(listened)


def _demo_model(demo: Path) -> tuple[Path, Path]:
    """The demo's exported model and held-out DICOM series (the demo is run, and the model exported, if needed)."""
    from medimg.demo import DemoPaths, ensure_demo_model
    from medimg.export import export_checkpoint

    onnx, dicom = demo / "model.onnx", DemoPaths(demo).dicom
    if not (onnx.is_file() and dicom.is_dir()):
        export_checkpoint(ensure_demo_model(demo)["checkpoint"], onnx)
    return onnx, dicom


def _send(files: list[Path], port: int) -> None:
    """C-STORE ``files`` to the listener, as a scanner or router would (medimg's own C-STORE SCU)."""
    from medimg.pacs.config import Pacs
    from medimg.pacs.dimse import DimseRemote

    scanner = DimseRemote(Pacs("scanner", host="127.0.0.1", port=port, ae_title=MEDIMG_AE, calling_ae="SCANNER"))
    refused = {sop: a.reason for sop, a in scanner.store(files).items() if a.status != 0}
    if refused:
        raise SystemExit(f"the listener refused {len(refused)} instance(s): {next(iter(refused.values()))}")


def _listener(orthanc: Orthanc, root: Path, args: argparse.Namespace) -> str:
    """Seconds from the last instance stored on the listener to the SEG + SR verified on the PACS."""
    import threading
    import time

    from medimg.inference.model import open_model
    from medimg.pacs.local_orthanc import free_ports

    onnx, dicom = _demo_model(Path(args.demo))
    files = sorted(p for p in dicom.rglob("*") if p.is_file())
    orthanc.use_credentials()
    model = open_model(onnx, device="cpu", threads=args.threads)
    done: list[tuple[float, SeriesOutcome]] = []
    finished, ready = threading.Event(), threading.Event()

    def outcome(o: SeriesOutcome) -> None:
        done.append((time.monotonic(), o))
        finished.set()

    port = free_ports(1)[0]
    listener = Listener(model, ae_title=MEDIMG_AE, port=port, workdir=root / "listen",
                        send_to=connect(orthanc.pacs(), "dicomweb"), idle_s=args.idle, on_outcome=outcome)  # fmt: skip
    thread = threading.Thread(target=listener.serve, args=(ready.set,), daemon=True)
    thread.start()
    ready.wait(60)
    _send(files, port)
    last = time.monotonic()
    finished.wait(600)
    listener.request_stop()
    thread.join(60)
    if not done or done[0][1].error or not (done[0][1].pushed and done[0][1].pushed.verified):
        raise SystemExit(f"the listener did not deliver: {done[0][1].line() if done else 'no outcome'}")
    at, o = done[0]
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in o.seconds.items())
    return (
        f"Listener (`medimg listen`, ONNX model of `medimg demo`, {args.threads} threads): the demo's held-out "
        f"series ({len(files)} MR instances) sent by C-STORE; last instance received -> SEG + SR verified on "
        f"Orthanc (STOW-RS + query-back): **{at - last:.1f} s** (series-complete wait {args.idle:.0f} s, {parts}). "
        f"Target (issue 28): under 60 s on 2 CPU cores. Load average {os.getloadavg()[0]:.1f} during the run (a "
        "shared, loaded machine)."
    )


def _bench(orthanc: Orthanc, root: Path, args: argparse.Namespace) -> tuple[list[tuple[str, float, float]], float]:
    files = write_series(_ct(args.size, args.slices), root / "ct", modality="CT", extra={"PatientID": "BENCH"})
    orthanc.upload(files)
    study = str(__import__("pydicom").dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    mb = sum(f.stat().st_size for f in files) / 1e6
    os.environ.update(MEDIMG_PACS_USER=USER, MEDIMG_PACS_PASSWORD=orthanc.password,
                      MEDIMG_PACS_CONFIG=str(root / "none.toml"))  # fmt: skip
    pacs = load_pacs(None, dicomweb=orthanc.dicomweb_url, host="127.0.0.1", port=orthanc.dicom_port,
                     ae_title=PACS_AE, calling_ae=MEDIMG_AE)  # fmt: skip
    web, dimse = connect(pacs, "dicomweb"), connect(pacs, "dimse")

    def fresh(name: str) -> Path:
        out = root / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        return out

    pulls = race({
        "medimg pacs pull --via dicomweb (WADO-RS)": lambda: pull(web, study, fresh("web")),
        "medimg pacs pull --via get (C-GET)": lambda: pull(dimse, study, fresh("get")),
        "Orthanc ZIP archive (REST), unpacked": lambda: _zip_pull(orthanc, study, fresh("zip")),
    }, args.repeats)  # fmt: skip
    rows = [(name, s, mb / s) for name, s in pulls.items()]
    mask = Volume(_mask((args.size, args.size, args.slices), args.segments), _ct(1, 1).affine)
    seg = write_seg(mask, root / "ct", root / "seg.dcm",
                    labels={i: f"class {i}" for i in range(1, args.segments + 1)})  # fmt: skip
    seg_mb = seg.stat().st_size / 1e6

    def pushed(remote: object) -> None:
        for pid in orthanc.rest("/tools/find", "POST", b'{"Level":"Series","Query":{"Modality":"SEG"}}') or []:  # type: ignore[union-attr]
            orthanc.rest(f"/series/{pid}", "DELETE")
        report = push(remote, [seg])  # type: ignore[arg-type]
        assert report.verified and report.arrived, report.summary()

    pushes = race({"medimg pacs push --via dicomweb (STOW-RS)": lambda: pushed(web),
                   "medimg pacs push --via dimse (C-STORE)": lambda: pushed(dimse)}, args.repeats)  # fmt: skip
    rows += [(name, s, seg_mb / s) for name, s in pushes.items()]
    return rows, seg_mb


def _report(rows: list[tuple[str, float, float]], seg_mb: float, args: argparse.Namespace, listened: str) -> None:
    zip_rate = next(r for n, _, r in rows if n.startswith("Orthanc ZIP"))
    load = os.getloadavg()[0]
    lines = [
        f"CT {args.size} x {args.size} x {args.slices} (int16, uncompressed, {args.slices} files); SEG "
        f"{args.segments} segments x {args.slices} frames, {seg_mb:.0f} MB. Orthanc 1.10.1 + DICOMweb plugin 1.7 "
        f"(Debian), HTTP authentication on, 127.0.0.1; median of {args.repeats} run(s), interleaved. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; load average "
        f"{load:.1f} during the run (a shared, loaded machine).",
        "",
        "| operation | s | MB/s | vs ZIP |",
        "|---|---|---|---|",
    ]
    for name, s, rate in rows:
        vs = f"{rate / zip_rate:.2f}x" if "pull" in name or "ZIP" in name else "-"
        lines.append(f"| {name} | {s:.2f} | {rate:.1f} | {vs} |")
    lines += ["", "Target (issue 28): pull at least 0.7x Orthanc's ZIP archive rate. Push times include the "
              "query-back before and after the store.", "", *([listened, ""] if listened else []),
              "Reproduce: `.venv/bin/python benchmarks/pacs_bench.py --update-md`"]  # fmt: skip
    body = "\n".join(lines)
    print(body)
    if args.update_md:
        update_section("PACS pull and push (issue 28)", body)


if __name__ == "__main__":
    main()
