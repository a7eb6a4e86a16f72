"""One frame of an enhanced multi-frame object (CT/MR/PET Image Storage with functional groups): its geometry,
rescale, what tells it apart in a 4D series and its diffusion encoding, from the Per-frame Functional Groups
Sequence (5200,9230) over the Shared Functional Groups Sequence (5200,9229) (PS3.3 C.7.6.16).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from medimg.io.dicom.diffusion import Diffusion, diffusion_from_dataset
from medimg.io.dicom.header import FileHeader, Frame
from medimg.io.dicom.image_kind import frame_part
from medimg.io.dicom.philips import is_philips, philips_frame_scale_slope
from medimg.io.dicom.raw import get_value
from medimg.io.dicom.values import as_str, checked, first_item, orientation_of, rescale_value

__all__ = ["enhanced_frame"]


def enhanced_frame(header: FileHeader, i: int, fg: Dataset, shared: Dataset | None, ds: Dataset) -> Frame:
    """One frame of an enhanced multi-frame object: per-frame functional groups override shared ones."""

    def group(kw: str) -> Dataset | None:
        return first_item(fg, kw) or first_item(shared, kw)

    issues = header.invalid_geometry
    orient = group("PlaneOrientationSequence")
    position = group("PlanePositionSequence")
    measures = group("PixelMeasuresSequence")
    transform = group("PixelValueTransformationSequence")
    content = first_item(fg, "FrameContentSequence")
    if transform is not None and "RescaleSlope" in transform:
        slope = rescale_value(transform.RescaleSlope, "Rescale Slope (0028,1053)", header.path, 1.0)
        intercept = rescale_value(transform.get("RescaleIntercept"), "Rescale Intercept (0028,1052)", header.path, 0.0)
    elif "RescaleSlope" in ds:
        slope = rescale_value(get_value(ds, "RescaleSlope"), "Rescale Slope (0028,1053)", header.path, 1.0)
        intercept = rescale_value(get_value(ds, "RescaleIntercept"), "Rescale Intercept (0028,1052)", header.path, 0.0)
    else:
        slope, intercept = _real_world_hu(group("RealWorldValueMappingSequence"), header.modality)
    cardiac = first_item(fg, "CardiacSynchronizationSequence")
    return Frame(
        header=header,
        index=i,
        rows=header.rows,
        columns=header.columns,
        iop=orientation_of(orient.get("ImageOrientationPatient") if orient else None, issues),
        ipp=checked(  # type: ignore[arg-type]
            position.get("ImagePositionPatient") if position else None,
            3,
            "Image Position (Patient) (0020,0032)",
            issues,
        ),
        pixel_spacing=checked(  # type: ignore[arg-type]
            measures.get("PixelSpacing") if measures else None, 2, "Pixel Spacing (0028,0030)", issues, positive=True
        ),
        slope=slope,
        intercept=intercept,
        acquisition=as_str(content.get("FrameAcquisitionNumber")) if content else None,
        temporal=as_str(content.get("TemporalPositionIndex")) if content else None,
        stack=as_str(content.get("StackID")) if content else None,
        trigger=as_str(cardiac.get("NominalCardiacTriggerDelayTime")) if cardiac else None,
        acquisition_time=as_str(content.get("FrameAcquisitionDateTime")) if content else None,
        diffusion=_frame_diffusion(ds, fg, shared) if header.modality == "MR" else None,
        part=frame_part(
            ds,
            first_item(fg, "MRImageFrameTypeSequence") or first_item(shared, "MRImageFrameTypeSequence"),
            header.image_type,
        )
        if header.modality == "MR"
        else None,
        philips_scale=philips_frame_scale_slope(fg) if is_philips(ds) and header.modality == "MR" else None,
    )


def _frame_diffusion(ds: Dataset, fg: Dataset, shared: Dataset | None) -> Diffusion | None:
    """The MR Diffusion Sequence (0018,9117) of one enhanced frame (per-frame, else shared)."""
    holder = fg if "MRDiffusionSequence" in fg else shared
    return diffusion_from_dataset(ds, None, holder)


def _real_world_hu(rwv: Dataset | None, modality: str) -> tuple[float, float]:
    """Slope/intercept of a Real World Value Mapping (0040,9096) item whose unit is Hounsfield, for CT only."""
    if rwv is None or modality != "CT":
        return 1.0, 0.0
    units = first_item(rwv, "MeasurementUnitsCodeSequence")
    if units is not None and str(units.get("CodeValue", "")).lower() in {"[hnsf'u]", "hu"}:
        return float(rwv.get("RealWorldValueSlope", 1) or 1), float(rwv.get("RealWorldValueIntercept", 0) or 0)
    return 1.0, 0.0
