"""The radiologist's review: viewer + feedback form (JupyterLab), SQLite feedback store, HTML/CSV report."""

from medimg.review.report import export_report
from medimg.review.store import SCHEMA_VERSION, VERDICTS, Feedback, FeedbackStore
from medimg.review.viewer import ReviewWidget, review

__all__ = ["SCHEMA_VERSION", "VERDICTS", "Feedback", "FeedbackStore", "ReviewWidget", "export_report", "review"]
