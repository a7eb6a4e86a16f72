"""A DICOM Structured Report per SEG: the TID 1500 Measurement Report a PACS shows without a plug-in.

One Volumetric ROI group (TID 1411) per segment of the SEG, each referencing its segment (and through it the
source series) and holding three measurements (TID 1419):

* Volume (SCT 118565006) in millilitres (UCUM ``mL``): voxels in the segment x voxel volume;
* Mean (SCT 373098007) and Standard Deviation (SCT 386136009, population SD) of the source image's values
  inside the segment, after (0028,1052)/(0028,1053) Rescale Intercept/Slope -- Hounsfield units (UCUM
  ``[hnsf'U]``) for CT, ``{unit}`` (no unit) otherwise. An empty segment gets its volume (0 mL) only.

Written with highdicom's ``Comprehensive3DSR``; the SEG and the source instances are its evidence, so patient
and study are the SEG's. The file appears atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medimg.errors import MedimgError
from medimg.io.atomic import atomic_path
from medimg.io.derived.concepts import new_instance

__all__ = ["SegmentStats", "segment_stats", "write_measurement_report"]

_SR_SERIES_NUMBER = 901  # after the SEG's 900
_HU = ("[hnsf'U]", "UCUM", "Hounsfield unit")
_NO_UNIT = ("{unit}", "UCUM", "unit")
_ML = ("mL", "UCUM", "milliliter")


@dataclass(frozen=True)
class SegmentStats:
    """One segment: its number and label, voxels, volume (mL), and mean/SD of the image values (None if empty)."""

    number: int
    label: str
    voxels: int
    volume_ml: float
    mean: float | None
    sd: float | None


def segment_stats(labels: Any, image: Any, segments: dict[int, str]) -> list[SegmentStats]:
    """Per segment number of ``segments``: statistics of ``image`` (a Volume) where ``labels`` (a Volume on the
    same grid, one label per voxel) equals it. The voxel volume is |det| of the affine's 3x3 part (mm^3)."""
    lab, img = np.asarray(labels.array), np.asarray(image.array, dtype=np.float64)
    if lab.shape != img.shape[: lab.ndim] or lab.ndim != 3:
        raise MedimgError(f"the SEG's grid {lab.shape} is not the image's {img.shape}; give the series it segments")
    voxel_ml = abs(float(np.linalg.det(np.asarray(labels.affine, dtype=float)[:3, :3]))) / 1000.0
    out = []
    for number, label in sorted(segments.items()):
        values = img[lab == number]
        n = int(values.size)
        mean, sd = (float(values.mean()), float(values.std())) if n else (None, None)
        out.append(SegmentStats(number, label, n, n * voxel_ml, mean, sd))
    return out


def _measurements(stat: SegmentStats, unit: tuple[str, str, str]) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    found = [hd.sr.Measurement(name=codes.SCT.Volume, value=round(stat.volume_ml, 6), unit=Code(*_ML))]
    if stat.mean is not None and stat.sd is not None:
        found.append(hd.sr.Measurement(name=codes.SCT.Mean, value=round(stat.mean, 6), unit=Code(*unit)))
        found.append(hd.sr.Measurement(name=codes.SCT.StandardDeviation, value=round(stat.sd, 6), unit=Code(*unit)))
    return found


def _groups(seg: Any, stats: list[SegmentStats], unit: tuple[str, str, str]) -> list[Any]:
    """One TID 1411 group per segment, its finding type the segment's (0062,000F) Segmented Property Type."""
    import highdicom as hd
    from pydicom.uid import generate_uid

    kinds = {int(s.SegmentNumber): s.SegmentedPropertyTypeCodeSequence[0] for s in seg.SegmentSequence}
    # The source images from the SEG's (0008,1115) Referenced Series Sequence, not highdicom's
    # ReferencedSegment.from_segmentation: that looks for (0062,000A) Segment Identification only per frame and
    # fails on a one-segment SEG, where highdicom itself writes it in the shared functional groups.
    images = [
        hd.sr.SourceImageForSegmentation(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID))
        for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    ]
    groups = []
    for stat in stats:
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"{stat.label}"[:64]),
                referenced_segment=hd.sr.ReferencedSegment(
                    str(seg.SOPClassUID), str(seg.SOPInstanceUID), stat.number, source_images=images
                ),
                finding_type=hd.sr.CodedConcept.from_dataset(kinds[stat.number]),
                measurements=_measurements(stat, unit),
            )
        )
    return groups


def write_measurement_report(
    seg_path: str | os.PathLike[str],
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    series_number: int = _SR_SERIES_NUMBER,
) -> tuple[Path, list[SegmentStats]]:
    """Write the TID 1500 SR of the SEG ``seg_path`` made from the series in folder ``source``; return its path
    and the statistics it holds."""
    import highdicom as hd
    from pydicom import dcmread
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from medimg.io.derived.seg_read import read_seg, segment_table
    from medimg.io.dicom.scan import scan
    from medimg.io.load import load_series

    seg = dcmread(seg_path)
    series_uid = str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    series = scan(source).find(series_uid)
    image = load_series(series)
    segments = {n: s.get("label", str(n)) for n, s in segment_table(seg).items()}
    stats = segment_stats(read_seg(seg_path, reference=series), image, segments)
    ct = series.modality == "CT"
    procedure = codes.LN.CTUnspecifiedBodyRegion if ct else codes.SCT.Imaging
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(uid=generate_uid(), name="medimg"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=procedure,
        imaging_measurements=_groups(seg, stats, _HU if ct else _NO_UNIT),
        title=codes.cid7021.ImagingMeasurementReport,
    )
    evidence = [seg, *(dcmread(f, stop_before_pixels=True) for f in series.files)]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_description="medimg measurements",
        is_complete=True,
        **new_instance(series_number),
    )
    dest = Path(out)
    with atomic_path(dest) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    return dest, stats
