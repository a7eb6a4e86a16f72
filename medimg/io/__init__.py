"""Image I/O: DICOM series discovery and loading with checked geometry, NIfTI read/write.

``load`` and ``scan`` are the entry points; :class:`Volume` is what they return.
"""

from medimg.io.dicom.scan import ScanResult, scan
from medimg.io.dicom.series import Series
from medimg.io.load import load, load_series
from medimg.io.volume import Volume, read_nifti

__all__ = ["ScanResult", "Series", "Volume", "load", "load_series", "read_nifti", "scan"]
