"""DICOM in: the raw element reader, the header model, pixels, series grouping with its geometry QA, the folder
scan, each vendor's private rules (``siemens.py``, ``ge.py``, ``philips.py`` behind ``image_kind.py`` and
``diffusion.py``), conversion to NIfTI, and writing test series. Results that go back to the hospital (SEG,
Parametric Map, Key Object) live in :mod:`medimg.io.derived`, which builds on this room and never the other way.
"""
