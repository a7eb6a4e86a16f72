"""What medimg sends back to the hospital, and reads back: DICOM Segmentation, Parametric Map and Key Object
Selection, with the source-series checks, grid placement and coded concepts they share. Built on
:mod:`medimg.io.dicom`; the place a result is written (and, later, sent).

``write_seg(mask, source_series, "out.dcm")`` writes; ``read_seg("out.dcm")`` (or ``medimg.load``) reads back
the label volume on the referenced image's grid; ``derived_objects`` lists SEG/Parametric Map files of a scan.
"""

from medimg.io.derived.concepts import AlgorithmInfo, class_concepts
from medimg.io.derived.seg_read import read_seg
from medimg.io.derived.seg_write import write_seg
from medimg.io.derived.source import SourceSlices, source_slices
from medimg.io.dicom.derived_listing import DerivedObject, derived_objects, derived_table

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
