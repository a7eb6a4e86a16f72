"""DICOM series loading and folder scanning, medimg side by side with the anchors, in one run.

    .venv/bin/python benchmarks/io_bench.py [--slices 300] [--size 512] [--repeats 5] [--update-md]

1. Writes a CT series (``--slices`` axial slices of ``--size``^2, uncompressed, shuffled file names) to a temp
   folder, then times on warm cache: ``medimg.io.load``; SimpleITK ImageSeriesReader (series discovery + read);
   a plain pydicom loop (read all, sort by position, stack, rescale); MONAI ``LoadImage(PydicomReader)``.
   Also peak traced memory of ``medimg.io.load`` over the final array size.
2. Writes 2,000 files in 10 series (256^2) and times ``medimg.io.dicom.scan`` against a plain pydicom loop that reads
   every file (``dcmread``) and groups by Series Instance UID.
3. Writes a ``--dwi-volumes``-volume DWI series of Siemens mosaics (128 x 128 x 48 per volume, 7 x 7 tiles, CSA
   headers as the scanner writes them; tests/mosaic_writer.py) and times: ``medimg.io.load`` (one 4D volume with
   b-values), medimg load + uncompressed NIfTI write (what dcm2niix does), ``dcm2niix -z n`` (C, subprocess), and
   nibabel's ``nicom.dicomwrappers`` (one ``MosaicWrapper`` per file, stacked).

Every figure is a median over ``--repeats`` runs; ratios are anchor / medimg (> 1: medimg is faster).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import race, update_section

from medimg.io import Volume, load, scan
from medimg.io.dicom.write import write_series


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: file cache and imports
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_ct(folder: Path, slices: int, size: int, seed: int = 0, **kw: object) -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1024, 2000, size=(size, size, slices), dtype=np.int16)
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    write_series(Volume(arr, affine), folder, modality="CT", rescale=(1.0, -1024.0), shuffle_names=True, **kw)  # type: ignore[arg-type]


def pydicom_loop(folder: Path) -> np.ndarray:
    import pydicom

    dss = [pydicom.dcmread(os.path.join(folder, f)) for f in os.listdir(folder)]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    vol = np.stack([d.pixel_array for d in dss], axis=-1).astype(np.float32)
    return vol * float(dss[0].RescaleSlope) + float(dss[0].RescaleIntercept)


def sitk_read(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayViewFromImage(reader.Execute())


def monai_read(folder: Path) -> object:
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    return LoadImage(reader=PydicomReader(), image_only=True)(str(folder))


def pydicom_scan(folder: Path) -> dict[str, list[str]]:
    import pydicom

    groups: dict[str, list[str]] = defaultdict(list)
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            groups[str(pydicom.dcmread(p).SeriesInstanceUID)].append(p)
    return groups


def make_dwi(folder: Path, volumes: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from mosaic_writer import write_mosaics

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 4000, size=(128, 128, 48), dtype=np.int16)
    directions = rng.normal(size=(volumes, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    gradients = [None, *[tuple(d) for d in directions[1:]]]
    b_values = [0.0] + [1000.0] * (volumes - 1)
    affine = np.diag([1.8, 1.8, 3.0, 1.0])
    write_mosaics(Volume(arr, affine), folder, n_volumes=volumes, b_values=b_values, gradients_lps=gradients)


def dcm2niix_convert(folder: Path, out: Path, name: str = "dwi") -> None:
    """``dcm2niix -z n -f NAME`` of ``folder`` into a fresh ``out`` (the reference converter, C, subprocess)."""
    import shutil
    import subprocess

    exe = shutil.which("dcm2niix", path=str(Path(sys.executable).parent)) or "dcm2niix"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    subprocess.run([exe, "-z", "n", "-f", name, "-o", str(out), str(folder)], check=True, capture_output=True)


def nibabel_mosaics(folder: Path) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom.dicomwrappers import wrapper_from_file

        wrappers = [wrapper_from_file(str(p)) for p in sorted(folder.iterdir())]
        return np.stack([w.get_data() for w in wrappers], axis=-1)


REALDICOM = Path(__file__).resolve().parents[2] / "shared" / "realdicom"
#: Classic (one file per slice) multi-volume series of the real sample: GE fMRI and Toshiba/Canon DTI.
VENDOR_SERIES = {
    "GE fMRI, 150 files (10 volumes by Instance order)": "dcm_qa_nih/In/20180918GE/mr_0004",
    "Toshiba/Canon DTI, 520 files (13 volumes, b=0 untagged)": "dcm_qa_toshiba/In/8006_DTI_AX_30d",
}


def medimg_convert(folder: Path, out: Path) -> None:
    import shutil

    from medimg.io.dicom.convert import convert

    if out.exists():
        shutil.rmtree(out)
    convert(folder, out, compress=False)  # uncompressed, as dcm2niix -z n


def vendor_section(repeats: int) -> str:
    """medimg convert vs dcm2niix on the real sample's classic 4D series (issue 25), interleaved in one process."""
    if not REALDICOM.is_dir():
        return f"Not measured: the real scanner sample ({REALDICOM}) is absent."
    lines = [
        f"Classic multi-volume series from the real scanner sample (`../shared/realdicom/`), `medimg convert` "
        f"(uncompressed NIfTI + sidecar + .bval/.bvec) against `dcm2niix -z n` (C, subprocess), interleaved, warm "
        f"cache, median of {repeats}; load average {os.getloadavg()[0]:.2f} at the start. Target: within 2x of "
        "dcm2niix.",
        "",
        "| series | medimg convert s | dcm2niix s | medimg / dcm2niix |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, rel in VENDOR_SERIES.items():
            folder = REALDICOM / rel
            times = race(
                {
                    "medimg": lambda f=folder: medimg_convert(f, Path(tmp) / "medimg"),
                    "dcm2niix": lambda f=folder: dcm2niix_convert(f, Path(tmp) / "dcm2niix", "%s_%p_%e"),
                },
                repeats,
            )
            ours, ref = times["medimg"], times["dcm2niix"]
            lines.append(f"| {name} | {ours:.3f} | {ref:.3f} | {ours / ref:.2f}x |")
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/io_bench.py --vendor-only --update-md`"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scan-files", type=int, default=2000)
    ap.add_argument("--dwi-volumes", type=int, default=64)
    ap.add_argument("--update-md", action="store_true", help="write the table into BENCHMARKS.md")
    ap.add_argument("--vendor-only", action="store_true", help="only the real vendor 4D series (issue 25)")
    args = ap.parse_args()
    vendor = vendor_section(args.repeats)
    print(vendor)
    if args.update_md:
        update_section("Vendor 4D series (issue 25)", vendor)
    if args.vendor_only:
        return

    with tempfile.TemporaryDirectory() as tmp:
        series = Path(tmp) / "ct"
        make_ct(series, args.slices, args.size)
        rows = []
        ours = median_time(lambda: load(series), args.repeats)
        rows.append(("medimg.io.load", ours))
        for name, fn in (
            ("SimpleITK ImageSeriesReader", lambda: sitk_read(series)),
            ("plain pydicom loop", lambda: pydicom_loop(series)),
            ("MONAI LoadImage(PydicomReader)", lambda: monai_read(series)),
        ):
            rows.append((name, median_time(fn, args.repeats)))
        tracemalloc.start()
        vol = load(series)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        mem_ratio = peak / vol.array.nbytes

        scan_root = Path(tmp) / "scan"
        per = args.scan_files // 10
        for s in range(10):
            make_ct(scan_root / f"s{s}", per, 256, seed=s, series_number=s + 1)
        scan_ours = median_time(lambda: scan(scan_root), args.repeats)
        scan_loop = median_time(lambda: pydicom_scan(scan_root), args.repeats)
        n_series = len(scan(scan_root))

        dwi = Path(tmp) / "dwi"
        make_dwi(dwi, args.dwi_volumes)
        dwi_shape = load(dwi).shape
        dwi_times = race(
            {
                "medimg.io.load (4D + b-values)": lambda: load(dwi),
                "medimg load + .nii write": lambda: load(dwi).save(Path(tmp) / "medimg_dwi.nii"),
                "dcm2niix -z n (C, subprocess)": lambda: dcm2niix_convert(dwi, Path(tmp) / "dcm2niix"),
                "nibabel dicomwrappers (MosaicWrapper per file)": lambda: nibabel_mosaics(dwi),
            },
            args.repeats,
        )

    lines = [
        f"Series load: {args.slices} axial {args.size}x{args.size} CT slices, uncompressed, shuffled names, "
        "warm cache, "
        f"median of {args.repeats}. Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}. medimg reads headers in one forked process per core (folders of 256+ "
        "files) and native pixels with up to 4 threads (file reads and numpy copies release the GIL); the "
        "anchors run as they come, single process.",
        "",
        "| reader | median s | anchor / medimg |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {t:.3f} | {t / ours:.2f}x |" for name, t in rows]
    lines += [
        "",
        f"Peak traced memory during `medimg.io.load` / final array size: **{mem_ratio:.2f}** (target <= 1.5).",
        "",
        f"Folder scan: {args.scan_files} files in {n_series} series (256x256), header-only in medimg.",
        "",
        "| scanner | median s | anchor / medimg |",
        "|---|---|---|",
        f"| medimg.io.dicom.scan | {scan_ours:.3f} | 1.00x |",
        f"| plain pydicom read loop + group by UID | {scan_loop:.3f} | {scan_loop / scan_ours:.2f}x |",
        "",
        f"Siemens mosaic DWI: {args.dwi_volumes} volumes (b 0 + {args.dwi_volumes - 1} directions at b 1000), each a "
        f"896 x 896 mosaic of 48 tiles, uncompressed, warm cache, interleaved, median of {args.repeats}; result "
        f"{' x '.join(map(str, dwi_shape))}.",
        "",
        "| reader | median s | anchor / medimg load + write |",
        "|---|---|---|",
    ]
    ref = dwi_times["medimg load + .nii write"]
    lines += [f"| {name} | {t:.3f} | {t / ref:.2f}x |" for name, t in dwi_times.items()]
    lines += [
        "",
        "Reproduce: `.venv/bin/python benchmarks/io_bench.py --update-md`",
    ]
    text = "\n".join(lines)
    print(text)
    if args.update_md:
        update_section("DICOM I/O (issue 3)", text)


if __name__ == "__main__":
    main()
