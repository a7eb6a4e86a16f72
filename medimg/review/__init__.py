"""The radiologist's review: viewer + feedback form (JupyterLab), reading sessions over a worklist (also as a
Voila page), SQLite feedback store, agreement between readers, HTML/CSV report."""

from medimg.review.report import export_report
from medimg.review.store import CANNOT_ASSESS, SCHEMA_VERSION, VERDICTS, Feedback, FeedbackStore
from medimg.review.study.agreement import StudyAgreement, study_agreement
from medimg.review.study.reading import ReadingSession, open_session
from medimg.review.study.session_view import SessionWidget, session
from medimg.review.study.worklist import ReadingCase, SkippedCase, Worklist, read_worklist
from medimg.review.viewer import ReviewWidget, review

__all__ = [
    "CANNOT_ASSESS",
    "SCHEMA_VERSION",
    "VERDICTS",
    "Feedback",
    "FeedbackStore",
    "ReadingCase",
    "ReadingSession",
    "ReviewWidget",
    "SessionWidget",
    "SkippedCase",
    "StudyAgreement",
    "Worklist",
    "export_report",
    "open_session",
    "read_worklist",
    "review",
    "session",
    "study_agreement",
]
