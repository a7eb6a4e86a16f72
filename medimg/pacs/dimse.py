"""A PACS over DIMSE with pynetdicom: C-ECHO, C-FIND, C-GET, C-MOVE (to medimg's own storage SCP), C-STORE.

Queries use the Study Root Query/Retrieve Information Model (PS3.4 C.6.2). C-MOVE needs the PACS to know
medimg's destination AE title with this host and ``receive_port`` -- otherwise it answers 0xA801 "Move
Destination unknown" (pynetdicom#358): the error says what to register. C-GET needs no registration of a port
and is tried first by ``medimg pacs pull --via dimse``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medimg.errors import MedimgError
from medimg.pacs.config import Pacs
from medimg.pacs.remote import Query, SeriesInfo, Sink, StoreResult

if TYPE_CHECKING:
    from pydicom import Dataset
    from pynetdicom.association import Association

__all__ = ["STORAGE_CLASSES", "DimseRemote", "status_text"]

#: Storage SOP classes medimg accepts when a PACS sends (C-GET sub-operations, C-MOVE): images it reads and the
#: derived objects it writes. (Fewer than 128 presentation contexts, the association limit.)
STORAGE_CLASSES = (
    "CTImageStorage", "MRImageStorage", "EnhancedCTImageStorage", "EnhancedMRImageStorage",
    "LegacyConvertedEnhancedCTImageStorage", "LegacyConvertedEnhancedMRImageStorage",
    "PositronEmissionTomographyImageStorage", "EnhancedPETImageStorage", "SecondaryCaptureImageStorage",
    "SegmentationStorage", "ParametricMapStorage", "KeyObjectSelectionDocumentStorage",
    "ComprehensiveSRStorage", "EnhancedSRStorage", "Comprehensive3DSRStorage",
)  # fmt: skip

#: SOP classes by UID (pynetdicom's ``sop_class`` names are made at run time, which type checkers cannot see):
#: Verification, and the Study Root Query/Retrieve Information Model FIND / GET / MOVE (PS3.4 C.6.2).
VERIFICATION = "1.2.840.10008.1.1"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"

#: DIMSE status codes medimg names (PS3.4 C.4.2.1.5, PS3.7 Annex C).
SUCCESS, CANCEL, WARNING = 0x0000, 0xFE00, 0xB000
PENDING = (0xFF00, 0xFF01)
MOVE_DESTINATION_UNKNOWN = 0xA801
NOT_SUPPORTED = 0x0122  # SOP Class not supported
_NAMES = {
    0xA801: "Move Destination unknown",
    0xA701: "Out of resources: unable to calculate number of matches",
    0xA702: "Out of resources: unable to perform sub-operations",
    0xA900: "Identifier does not match SOP Class",
    0xC000: "Unable to process",
    0x0122: "SOP Class not supported",
    0x0124: "Not authorized",
    0xB000: "Sub-operations complete, one or more failures",
}


def status_text(status: int) -> str:
    return f"0x{status:04X} {_NAMES.get(status, 'failure')}".strip()


def _status(ds: Dataset) -> int | None:
    """The (0000,0900) Status of a response, None when none came (the association was lost)."""
    return int(ds.Status) if ds is not None and "Status" in ds else None


class DimseRemote:
    """:class:`~medimg.pacs.remote.Remote` over DIMSE."""

    def __init__(self, pacs: Pacs) -> None:
        self.pacs = pacs
        self.host, self.port, self.called_ae = pacs.require_dimse()

    # --- associations ------------------------------------------------------------------------------------------
    def _ae(self, contexts: Iterable[tuple[str, list[str] | None]]) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.pacs.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.pacs.timeout
        for uid, syntaxes in contexts:
            if syntaxes is None:
                ae.add_requested_context(uid)
            else:
                ae.add_requested_context(uid, syntaxes)
        return ae

    @contextlib.contextmanager
    def _association(self, contexts: Iterable[tuple[str, list[str] | None]], **kw: Any) -> Iterator[Association]:
        assoc = self._ae(contexts).associate(self.host, self.port, ae_title=self.called_ae, **kw)
        if not assoc.is_established:
            if assoc.is_rejected:
                raise MedimgError(
                    f"{self.pacs.where()} refused the association from AE title {self.pacs.calling_ae!r}: register "
                    "that AE title (with this host) on the PACS, or set calling_ae / ae_title to names it knows"
                )
            raise MedimgError(f"cannot reach {self.pacs.where()} over DICOM; is it running, host and port right?")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _lost(self, what: str) -> MedimgError:
        return MedimgError(f"{self.pacs.where()} closed the association during {what}; try again")

    # --- Remote ------------------------------------------------------------------------------------------------
    def echo(self) -> None:
        with self._association([(VERIFICATION, None)]) as assoc:
            status = _status(assoc.send_c_echo())
        if status is None:
            raise self._lost("C-ECHO")
        if status != SUCCESS:
            raise MedimgError(f"{self.pacs.where()} answered C-ECHO with {status_text(status)}")

    def _find(self, identifier: Dataset) -> list[Dataset]:
        found = []
        with self._association([(FIND, None)]) as assoc:
            for status, match in assoc.send_c_find(identifier, FIND):
                code = _status(status)
                if code is None:
                    raise self._lost("C-FIND")
                if code in PENDING and match is not None:
                    found.append(match)
                elif code != SUCCESS:
                    raise MedimgError(f"{self.pacs.where()} answered C-FIND with {status_text(code)}")
        return found

    def find_series(self, query: Query) -> list[SeriesInfo]:
        from pydicom import Dataset

        ident = Dataset()
        ident.QueryRetrieveLevel = "SERIES"
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription", "StudyDate",
                        "SeriesNumber", "NumberOfSeriesRelatedInstances", "PatientID", "AccessionNumber"):  # fmt: skip
            setattr(ident, keyword, "")
        for keyword, value in query.filters().items():
            setattr(ident, keyword, value)
        rows = []
        for ds in self._find(ident):
            number, count = ds.get("SeriesNumber"), ds.get("NumberOfSeriesRelatedInstances")
            rows.append(
                SeriesInfo(
                    study_uid=str(ds.StudyInstanceUID),
                    series_uid=str(ds.SeriesInstanceUID),
                    modality=str(ds.get("Modality", "")),
                    description=str(ds.get("SeriesDescription", "")),
                    study_date=str(ds.get("StudyDate", "")),
                    series_number=int(number) if number not in (None, "") else None,
                    n_instances=int(count) if count not in (None, "") else None,
                )
            )
        return rows

    def instance_uids(self, study_uid: str, series_uid: str) -> set[str]:
        from pydicom import Dataset

        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE"
        ident.StudyInstanceUID, ident.SeriesInstanceUID, ident.SOPInstanceUID = study_uid, series_uid, ""
        return {str(ds.SOPInstanceUID) for ds in self._find(ident) if ds.get("SOPInstanceUID")}

    def _retrieve_identifiers(self, study_uid: str, series_uid: str, sop_uids: list[str] | None) -> list[Dataset]:
        """One SERIES-level identifier for a whole series, else one IMAGE-level identifier per instance."""
        from pydicom import Dataset

        idents = []
        for sop in sop_uids if sop_uids is not None else [None]:
            ident = Dataset()
            ident.QueryRetrieveLevel = "SERIES" if sop is None else "IMAGE"
            ident.StudyInstanceUID, ident.SeriesInstanceUID = study_uid, series_uid
            if sop is not None:
                ident.SOPInstanceUID = sop
            idents.append(ident)
        return idents

    def fetch(self, study_uid: str, series_uid: str, sop_uids: list[str] | None, sink: Sink) -> None:
        """C-GET: the PACS sends the instances back on the same association (no port to register)."""
        from pynetdicom import build_role, evt, sop_class

        storage = [str(getattr(sop_class, name)) for name in STORAGE_CLASSES]
        receiver = _Receiver(sink)
        roles = [build_role(uid, scp_role=True) for uid in storage]
        contexts = [(GET, None)] + [(uid, None) for uid in storage]
        handlers = [(evt.EVT_C_STORE, receiver.on_store)]
        with self._association(contexts, ext_neg=roles, evt_handlers=handlers) as assoc:
            for ident in self._retrieve_identifiers(study_uid, series_uid, sop_uids):
                self._check_retrieve(assoc.send_c_get(ident, GET), "C-GET")
        receiver.raise_first()

    def move(self, study_uid: str, series_uid: str, sop_uids: list[str] | None, sink: Sink) -> None:
        """C-MOVE to medimg's own storage SCP, started on ``receive_port`` for the duration of the move."""
        from pynetdicom import AE, evt, sop_class

        if not self.pacs.receive_port:
            raise MedimgError(f"{self.pacs.where()} needs receive_port (medimg's storage SCP port) for C-MOVE")
        receiver = _Receiver(sink)
        scp = AE(ae_title=self.pacs.destination_ae)
        scp.network_timeout = self.pacs.timeout
        for name in STORAGE_CLASSES:
            scp.add_supported_context(getattr(sop_class, name))
        try:
            server = scp.start_server(
                ("0.0.0.0", self.pacs.receive_port), block=False, evt_handlers=[(evt.EVT_C_STORE, receiver.on_store)]
            )
        except OSError as exc:
            raise MedimgError(f"cannot listen on port {self.pacs.receive_port} for C-MOVE ({exc.strerror})") from None
        assert server is not None  # start_server(block=False) returns the server
        try:
            with self._association([(MOVE, None)]) as assoc:
                for ident in self._retrieve_identifiers(study_uid, series_uid, sop_uids):
                    self._check_retrieve(assoc.send_c_move(ident, self.pacs.destination_ae, MOVE), "C-MOVE")
        finally:
            server.shutdown()
        receiver.raise_first()

    def _check_retrieve(self, responses: Iterable[tuple[Dataset, Dataset | None]], what: str) -> None:
        last = None
        for status, _ in responses:
            last = _status(status)
            if last is None:
                raise self._lost(what)
        if last in (SUCCESS, None):
            return
        if what != "C-MOVE":
            raise MedimgError(f"{self.pacs.where()} answered {what} with {status_text(last)}")
        dest = self.pacs.destination_ae
        register = (
            f"register AE title {dest} with this host and port {self.pacs.receive_port} on the PACS, or pull with "
            "C-GET or DICOMweb"
        )
        if last == MOVE_DESTINATION_UNKNOWN:
            raise MedimgError(
                f"{self.pacs.where()} refused the C-MOVE destination {dest!r} ({status_text(last)}): {register}"
            )
        # Orthanc up to 1.10 answers an unknown destination with 0xC000, not 0xA801
        raise MedimgError(
            f"{self.pacs.where()} answered C-MOVE to {dest!r} with {status_text(last)}; if it does not know that "
            f"destination, {register}"
        )

    def store(self, paths: Iterable[Path]) -> dict[str, StoreResult]:
        """C-STORE every file on one association, each in its own transfer syntax (sent as stored, not decoded)."""
        from pydicom import dcmread
        from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

        files = [(Path(p), dcmread(p, stop_before_pixels=True)) for p in paths]
        syntaxes: dict[str, set[str]] = {}
        for _, ds in files:
            syntaxes.setdefault(str(ds.SOPClassUID), {ExplicitVRLittleEndian, ImplicitVRLittleEndian}).add(
                str(ds.file_meta.TransferSyntaxUID)
            )
        contexts = [(uid, sorted(ts)) for uid, ts in syntaxes.items()]
        results: dict[str, StoreResult] = {}
        with self._association(contexts) as assoc:
            for path, ds in files:
                try:
                    code = _status(assoc.send_c_store(path))
                except ValueError:  # pynetdicom: the PACS accepted no context for this SOP class / syntax
                    why = f"0x{NOT_SUPPORTED:04X} SOP Class or transfer syntax not accepted by the PACS"
                    results[str(ds.SOPInstanceUID)] = StoreResult(NOT_SUPPORTED, why)
                    continue
                if code is None:
                    raise self._lost(f"C-STORE of {path.name}")
                ok = code == SUCCESS or code & 0xF000 == WARNING
                results[str(ds.SOPInstanceUID)] = StoreResult(
                    0 if ok else code, "accepted" if ok else status_text(code)
                )
        return results


class _Receiver:
    """The C-STORE handler of a C-GET or C-MOVE: hands each instance to the sink; the first error is kept and
    raised once the retrieve is over (raising inside pynetdicom's handler thread would only abort)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.errors: list[MedimgError] = []

    def on_store(self, event: Any) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.sink(ds)
        except MedimgError as exc:
            self.errors.append(exc)
            return 0xC000
        except OSError as exc:
            self.errors.append(MedimgError(f"cannot write a received instance ({exc.strerror})"))
            return 0xA700  # Out of resources
        return SUCCESS

    def raise_first(self) -> None:
        if self.errors:
            raise self.errors[0]
