"""A PACS over DICOMweb with dicomweb-client: QIDO-RS to search, WADO-RS to retrieve, STOW-RS to store.

HTTP basic authentication comes from :meth:`medimg.pacs.config.Pacs.credentials`; it rides in the
``requests`` session, never in a URL. Every HTTP failure becomes one :class:`~medimg.errors.MedimgError` line
naming the PACS (redacted) and what to do; a response body is never quoted (a server may echo the request).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimg.errors import MedimgError
from medimg.pacs.config import Pacs
from medimg.pacs.remote import Query, SeriesInfo, Sink, StoreResult

if TYPE_CHECKING:
    from dicomweb_client import DICOMwebClient
    from pydicom import Dataset

__all__ = ["DicomWebRemote"]

# dicomweb-client logs storage failures at ERROR but installs no handler: without this, Python's last-resort
# handler would print them on stderr next to medimg's own one-line message.
logging.getLogger("dicomweb_client").addHandler(logging.NullHandler())

#: Attributes asked for in a series search besides the defaults: (0008,0020) StudyDate, (0008,103E)
#: SeriesDescription, (0020,0011) SeriesNumber, (0020,1209) NumberOfSeriesRelatedInstances.
SERIES_FIELDS = ("StudyDate", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances")
#: (0008,1198) Failed SOP Sequence item attribute (0008,1197) Failure Reason; 0x0110 "Processing failure"
#: stands in when the server gives none.
PROCESSING_FAILURE = 0x0110


def _value(ds: Dataset, keyword: str, default: Any = "") -> Any:
    value = ds.get(keyword)
    return default if value in (None, "") else value


class DicomWebRemote:
    """:class:`~medimg.pacs.remote.Remote` over DICOMweb."""

    def __init__(self, pacs: Pacs) -> None:
        self.pacs = pacs
        self._client: DICOMwebClient | None = None

    @property
    def client(self) -> DICOMwebClient:
        if self._client is None:
            from dicomweb_client import DICOMwebClient
            from dicomweb_client.session_utils import create_session, create_session_from_user_pass

            url = self.pacs.require_dicomweb()
            creds = self.pacs.credentials()
            session = create_session() if creds is None else create_session_from_user_pass(*creds)
            self._client = DICOMwebClient(url, session=session, timeout=self.pacs.timeout)
            # a PACS that is busy is asked again, briefly; a wrong password or a missing study is not
            self._client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=250)
        return self._client

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn requests' exceptions into one line naming the PACS and the fix; no URL with credentials, no body."""
        import requests

        where = self.pacs.where()
        try:
            yield
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in (401, 403):
                raise MedimgError(
                    f"{where} refused the credentials (HTTP {code}) for {what}; set MEDIMG_PACS_USER and "
                    "MEDIMG_PACS_PASSWORD (or a netrc entry for its host) to an account it knows"
                ) from None
            raise MedimgError(f"{where} answered HTTP {code} to {what}") from None
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            # ChunkedEncodingError: the server went away in the middle of a streamed (multipart) answer
            raise MedimgError(
                f"cannot reach {where} for {what} ({type(exc).__name__}); is it running and the URL right?"
            ) from None

    def echo(self) -> None:
        with self._errors("a study search"):
            self.client.search_for_studies(limit=1)

    def find_series(self, query: Query) -> list[SeriesInfo]:
        from pydicom import Dataset

        with self._errors("a series search"):
            found = self.client.search_for_series(
                search_filters=query.filters(), fields=list(SERIES_FIELDS), get_remaining=True
            )
        rows = []
        for item in found:
            ds = Dataset.from_json(item)
            number, count = _value(ds, "SeriesNumber", None), _value(ds, "NumberOfSeriesRelatedInstances", None)
            rows.append(
                SeriesInfo(
                    study_uid=str(ds.StudyInstanceUID),
                    series_uid=str(ds.SeriesInstanceUID),
                    modality=str(_value(ds, "Modality")),
                    description=str(_value(ds, "SeriesDescription")),
                    study_date=str(_value(ds, "StudyDate")),
                    series_number=None if number is None else int(number),
                    n_instances=None if count is None else int(count),
                )
            )
        return rows

    def instance_uids(self, study_uid: str, series_uid: str) -> set[str]:
        import requests

        what = f"the instance list of series {series_uid}"
        try:
            found = self.client.search_for_instances(study_uid, series_uid, get_remaining=True)
        except requests.HTTPError as exc:
            if exc.response is not None and exc.response.status_code == 404:
                return set()  # a series it does not hold: Orthanc answers [], some servers 404
            with self._errors(what):
                raise
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError):
            with self._errors(what):
                raise
        # (0008,0018) SOP Instance UID, read straight from the DICOM JSON
        return {str(item["00080018"]["Value"][0]) for item in found if "00080018" in item}

    def fetch(self, study_uid: str, series_uid: str, sop_uids: list[str] | None, sink: Sink) -> None:
        with self._errors(f"retrieving series {series_uid}"):
            if sop_uids is None:
                for ds in self.client.iter_series(study_uid, series_uid):
                    sink(ds)
                return
            for sop in sop_uids:
                sink(self.client.retrieve_instance(study_uid, series_uid, sop))

    def store(self, paths: Iterable[Path]) -> dict[str, StoreResult]:
        """STOW-RS, one request per file (a refused file does not hide the answers for the others)."""
        from pydicom import dcmread

        results: dict[str, StoreResult] = {}
        for path in paths:
            ds = dcmread(path)
            sop = str(ds.SOPInstanceUID)
            with self._errors(f"storing {Path(path).name}"):
                answer = self.client.store_instances([ds])
            failed = {str(i.ReferencedSOPInstanceUID): i for i in answer.get("FailedSOPSequence", [])}
            if sop in failed:
                reason = int(failed[sop].get("FailureReason", PROCESSING_FAILURE))
                results[sop] = StoreResult(reason, f"refused (Failure Reason 0x{reason:04X})")
            else:
                results[sop] = StoreResult(0, "accepted")
        return results
