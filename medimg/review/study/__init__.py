"""The reader study: a worklist of cases, reading sessions (one per reader, seeded blinded order, resumable),
the session's widget and its Voila page, agreement between readers (Cohen/Fleiss kappa, Krippendorff alpha with
bootstrap intervals) and the study's report section. One-case review (viewer, verdict store, DICOM export)
stays in :mod:`medimg.review`."""
