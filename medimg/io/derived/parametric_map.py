"""An explanation heatmap, or a class's calibrated probability (:func:`write_probability_map`), as a DICOM
Parametric Map (PS3.3 A.75), written with highdicom, and read back.

The map is stored per source slice, each frame on its source slice's plane position (see
:mod:`medimg.io.derived.source`), so a viewer can overlay it on the CT/MR it explains. Its values are given
meaning by the Real World Value Mapping Sequence (0040,9096): unit "arbitrary unit" (UCUM ``[arb'U]``), LUT
Label (0040,9210) ``ATTENTION`` and an LUT Explanation (0028,3003) naming the method, target class and layer,
which Content Description (0070,0081) repeats. Two encodings:

* ``"float32"`` (default): Float Pixel Data (7FE0,0008), values as computed, mapping slope 1, intercept 0;
* ``"uint16"``: stored integers 0..65535 with slope ``max / 65535`` -- for viewers that cannot show float
  pixel data (quantisation error below 1e-5 of the maximum).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medimg.errors import DicomReadError, ImageValueError, MedimgError
from medimg.io.atomic import atomic_path
from medimg.io.derived.concepts import AlgorithmInfo, new_instance
from medimg.io.derived.grid import frame_geometry, place_frames, referenced_series_uids
from medimg.io.derived.pm_readers import complete_for_readers
from medimg.io.derived.source import PARAMETRIC_MAP_STORAGE, SourceSlices, check_on_grid, source_slices
from medimg.io.dicom.series import Series
from medimg.io.volume import Volume

__all__ = ["Quantity", "read_parametric_map", "write_map", "write_parametric_map", "write_probability_map"]

Encoding = Literal["float32", "uint16"]

_UINT16_MAX = 65535
_LO = 64  # Long String (LO) value length, PS3.5 6.2
_PM_SERIES_NUMBER = 901


def describe(method: str, label: int, label_name: str | None, layer: str) -> str:
    """``"hirescam class 1 (spleen) layer ...model.2.conv"``, at most 64 characters (an LO value).

    The layer keeps its last dotted components when the text is too long: they name the layer.
    """
    head = f"{method} class {label}" + (f" ({label_name})" if label_name else "") + " layer "
    room = _LO - len(head)
    tail = layer if len(layer) <= room else "..." + layer[-(room - 3) :]
    return (head + tail)[:_LO]


def write_parametric_map(
    heatmap: Volume,
    source: str | os.PathLike[str] | Series | SourceSlices,
    out: str | os.PathLike[str],
    *,
    method: str,
    label: int,
    layer: str,
    label_name: str | None = None,
    algorithm: AlgorithmInfo | None = None,
    encoding: Encoding = "float32",
    series_number: int = _PM_SERIES_NUMBER,
) -> Path:
    """Write ``heatmap`` (finite values >= 0 on the source series' grid) as a Parametric Map of ``source``.

    Args:
        heatmap: the map, shape (i, j, k) and affine exactly as ``medimg.load(source)`` gives.
        source: the DICOM series it explains (folder, file, scanned :class:`Series` or :class:`SourceSlices`).
        method / label / layer / label_name: what the map explains, written into the value mapping and the
            content description.
        encoding: ``"float32"`` or ``"uint16"`` (scaled integers).

    Raises:
        ImageValueError: NaN/inf or negative values, or a non-3D heatmap.
        SeriesGeometryError / SeriesSelectionError / MedimgError: see :func:`source_slices`.
    """
    text = describe(method, label, label_name, layer)
    quantity = Quantity("ATTENTION", ("[arb'U]", "arbitrary unit"), text, f"medimg {method} heatmap")
    return write_map(
        heatmap, source, out, quantity, algorithm=algorithm, encoding=encoding, series_number=series_number
    )


def write_probability_map(
    probability: Volume,
    source: str | os.PathLike[str] | Series | SourceSlices,
    out: str | os.PathLike[str],
    *,
    label: int,
    temperatures: Sequence[float] = (1.0,),
    label_name: str | None = None,
    algorithm: AlgorithmInfo | None = None,
) -> Path:
    """Write the (calibrated) probability 0..1 of class ``label`` per voxel as a float32 Parametric Map of
    ``source``: LUT Label ``PROBABILITY``, unit UCUM ``1`` (no units), and an LUT Explanation naming the class
    and the temperatures the members' logits were divided by. Float, not a FRACTIONAL SEG: its 8-bit fractions would
    quantise the probability in steps of 1/255, and a temperature-scaled probability is a measured quantity
    with a real-world value mapping rather than a segment."""
    if np.asarray(probability.array).size and float(np.asarray(probability.array).max()) > 1.0 + 1e-6:
        raise ImageValueError("probabilities above 1: pass the softmax, not the logits; nothing written", out)
    name = f" ({label_name})" if label_name else ""
    t = ", ".join(f"{v:.4g}" for v in dict.fromkeys(temperatures))  # each distinct one, in order
    text = f"probability of class {label}{name}, T {t}"
    quantity = Quantity("PROBABILITY", ("1", "no units"), text, "medimg calibrated probability")
    return write_map(probability, source, out, quantity, algorithm=algorithm, encoding="float32")


@dataclass(frozen=True)
class Quantity:
    """What a Parametric Map's values are: the LUT Label (0040,9210) ``label`` (16 characters at most), the
    UCUM ``unit`` (code, meaning) of the Measurement Units Code Sequence (0040,08EA), the LUT Explanation
    (0028,3003) and Content Description (0070,0081) ``text``, and the Series Description (0008,103E)."""

    label: str
    unit: tuple[str, str]
    text: str
    series_description: str


def write_map(
    values_volume: Volume,
    source: str | os.PathLike[str] | Series | SourceSlices,
    out: str | os.PathLike[str],
    quantity: Quantity,
    *,
    algorithm: AlgorithmInfo | None = None,
    encoding: Encoding = "float32",
    series_number: int = _PM_SERIES_NUMBER,
) -> Path:
    """Write finite values >= 0 on the source series' grid as a Parametric Map of ``source`` whose values mean
    ``quantity`` (:func:`write_parametric_map` for heatmaps; the arguments and errors as there)."""
    import highdicom as hd

    from medimg._version import __version__

    out = Path(out)
    src = source if isinstance(source, SourceSlices) else source_slices(source, purpose="a DICOM Parametric Map")
    check_on_grid(values_volume, src, "map")
    values = _checked_values(values_volume, out)
    text = quantity.text[:_LO]
    pixels, mapping, window = _encoded(values, src, quantity, encoding)
    algorithm = algorithm or AlgorithmInfo("medimg", __version__)
    try:
        pm = hd.pm.ParametricMap(
            source_images=src.datasets,
            pixel_array=pixels,
            **new_instance(series_number),
            manufacturer_model_name=algorithm.name[:_LO],
            software_versions=__version__,
            device_serial_number="0",
            contains_recognizable_visual_features=False,
            real_world_value_mappings=[mapping],
            voi_lut_transformations=[window],
            content_description=text,
            content_label=quantity.label,
            series_description=quantity.series_description[:_LO],
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise MedimgError(f"highdicom refused to build the Parametric Map ({type(exc).__name__}: {exc})", out) from exc
    # General Series (C.7.3.1) Laterality (0020,0060) is Type 2C: copied from the source, empty when unknown
    pm.Laterality = src.datasets[0].get("Laterality") or None
    complete_for_readers(pm, src.datasets[0])  # Frame Anatomy, frame order: what dcmqi needs to read it
    with atomic_path(out) as tmp:
        pm.save_as(tmp)
    return out


def _checked_values(heatmap: Volume, out: Path) -> npt.NDArray[np.float32]:
    """The heatmap as float32, refused unless 3D, finite and non-negative."""
    values = np.asarray(heatmap.array, dtype=np.float32)
    if values.ndim != 3:
        raise ImageValueError(f"a Parametric Map is written from a 3D heatmap, got shape {values.shape}", out)
    if not np.all(np.isfinite(values)) or (values.size and float(values.min()) < 0):
        raise ImageValueError("the map holds NaN, infinite or negative values; nothing written", out)
    return values


def _encoded(
    values: npt.NDArray[np.float32], src: SourceSlices, quantity: Quantity, encoding: Encoding
) -> tuple[Any, Any, Any]:
    """(frames, Real World Value Mapping, display window) of the values in ``encoding``: float32 as they are, or
    uint16 scaled so the maximum is 65535 with the slope in the mapping."""
    import highdicom as hd

    top = float(values.max()) if values.size else 0.0
    if encoding == "float32":
        pixels: npt.NDArray[Any] = src.frames_from_volume(values)
        value_range: tuple[float, float] | tuple[int, int] = (0.0, max(top, 1.0))
        slope = 1.0
    elif encoding == "uint16":
        slope = max(top, float(np.finfo(np.float32).tiny)) / _UINT16_MAX
        pixels = src.frames_from_volume(np.rint(values / slope).astype(np.uint16))
        value_range = (0, _UINT16_MAX)
    else:
        raise MedimgError(f"encoding must be 'float32' or 'uint16', got {encoding!r}")
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=quantity.label,
        lut_explanation=quantity.text[:_LO],
        unit=hd.sr.CodedConcept(value=quantity.unit[0], scheme_designator="UCUM", meaning=quantity.unit[1]),
        value_range=value_range,
        slope=slope,
        intercept=0.0 if encoding == "float32" else 0,
    )
    # the display window spans the stored values; LINEAR_EXACT allows a width below 1 (C.11.2.1.3.2)
    stored_top = float(top or 1.0) if encoding == "float32" else float(_UINT16_MAX)
    window = hd.VOILUTTransformation(
        window_center=stored_top / 2, window_width=stored_top, voi_lut_function="LINEAR_EXACT"
    )
    return pixels, mapping, window


def read_parametric_map(
    path: str | os.PathLike[str], *, reference: str | os.PathLike[str] | Series | None = None
) -> Volume:
    """Read a Parametric Map into a float32 :class:`Volume` of real-world values (the first value mapping's
    slope and intercept applied) on the grid of the image it references; ``reference`` as for
    :func:`medimg.io.derived.read_seg`."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels.utils import iter_pixels

    p = Path(path)
    try:
        ds = pydicom.dcmread(p)
    except (InvalidDicomError, OSError, EOFError, ValueError) as exc:
        raise DicomReadError(f"cannot read the Parametric Map ({type(exc).__name__}: {exc})", p) from exc
    if str(ds.get("SOPClassUID", "")) != PARAMETRIC_MAP_STORAGE:
        raise MedimgError("not a DICOM Parametric Map (SOP Class UID (0008,0016))", p)
    geom = frame_geometry(ds, p)
    grid = place_frames(ds, geom, p, reference)
    slope, intercept, meaning = _value_mapping(ds)
    out = np.zeros(grid.shape, dtype=np.float32)
    try:
        for f, frame in enumerate(iter_pixels(ds)):
            out[:, :, int(grid.k_of_frame[f])] = frame.T.astype(np.float32) * slope + intercept
    except (ValueError, NotImplementedError, RuntimeError) as exc:
        raise DicomReadError(f"cannot decode the Parametric Map frames ({type(exc).__name__}: {exc})", p) from exc
    meta = {
        "source_format": "dicom-pm",
        "modality": str(ds.get("Modality", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "referenced_series_uids": referenced_series_uids(ds),
        "frame_of_reference_uid": str(ds.get("FrameOfReferenceUID", "")),
        "content_description": str(ds.get("ContentDescription", "")),
        "value_unit": meaning,
    }
    return Volume(out, grid.affine, meta)


def _value_mapping(ds: Any) -> tuple[float, float, str]:
    groups = [ds.get("SharedFunctionalGroupsSequence"), (ds.get("PerFrameFunctionalGroupsSequence") or [None])]
    for seq in groups:
        if not seq or seq[0] is None:
            continue
        for frame_value in seq[0].get("RealWorldValueMappingSequence") or []:
            unit = frame_value.get("MeasurementUnitsCodeSequence")
            meaning = str(unit[0].CodeMeaning) if unit else ""
            return (
                float(frame_value.get("RealWorldValueSlope", 1.0)),
                float(frame_value.get("RealWorldValueIntercept", 0.0)),
                meaning,
            )
    return 1.0, 0.0, ""
