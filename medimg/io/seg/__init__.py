"""DICOM Segmentation out and in, and the source-series checks a Parametric Map shares (see
:mod:`medimg.io.parametric_map`).

``write_seg(mask, source_series, "out.dcm")`` writes; ``read_seg("out.dcm")`` (or ``medimg.load``) reads back
the label volume on the referenced image's grid; ``derived_objects`` lists SEG/Parametric Map files of a scan.
"""

from medimg.io.seg.concepts import AlgorithmInfo, class_concepts
from medimg.io.seg.listing import DerivedObject, derived_objects, derived_table
from medimg.io.seg.read import read_seg
from medimg.io.seg.source import SourceSlices, source_slices
from medimg.io.seg.write import write_seg

__all__ = [
    "AlgorithmInfo",
    "DerivedObject",
    "SourceSlices",
    "class_concepts",
    "derived_objects",
    "derived_table",
    "read_seg",
    "source_slices",
    "write_seg",
]
