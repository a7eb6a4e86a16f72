"""``medimg demo``: the main job end to end on data that ships inside installed packages (no download).

Today it runs the I/O part: scan pydicom's messy sample folder and print the QA table, load the enhanced CT
sample in Hounsfield units, convert the usable series to NIfTI with sidecars. Writes under ``outputs/demo/``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from medimg.io.atomic import atomic_write_text

__all__ = ["run_demo"]


def run_demo(out: str | os.PathLike[str] = "outputs/demo") -> dict[str, object]:
    from medimg.cli import format_scan_table
    from medimg.data.samples import pydicom_file, pydicom_folder
    from medimg.io import load, scan
    from medimg.io.convert import convert

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    folder = pydicom_folder("dicomdirtests")
    print(f"[1/3] scanning {folder} (pydicom's sample DICOM tree)")
    found = scan(folder)
    print(format_scan_table([s.summary() for s in found]))

    print("\n[2/3] loading the enhanced multi-frame CT sample (eCT_Supplemental.dcm)")
    ct = load(pydicom_file("eCT_Supplemental.dcm"))
    print(f"      {ct}  HU range [{int(ct.array.min())}, {int(ct.array.max())}]")
    ct_path = ct.save(out / "eCT_Supplemental.nii.gz")

    print(f"\n[3/3] converting the usable series to NIfTI under {out / 'nifti'}")
    report = convert(folder, out / "nifti")
    for p in report.written:
        print(f"      wrote {p}")
    for key, why in report.refused.items():
        print(f"      refused {key}: {why}")
    summary: dict[str, object] = {
        "series_found": len(found),
        "converted": [str(p) for p in report.written] + [str(ct_path)],
        "refused": report.refused,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    print(f"\ndemo done in {summary['seconds']} s; summary in {out / 'summary.json'}")
    return summary
