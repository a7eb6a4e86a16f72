"""Results going out, studies coming in: a PACS over DICOMweb (dicomweb-client) or DIMSE (pynetdicom).

``connect(load_pacs("research"), "dicomweb")`` gives a :class:`~medimg.pacs.remote.Remote`;
:func:`medimg.pacs.pull.pull` retrieves a study resumably and scans it; :func:`medimg.pacs.push.push` sends
files and verifies each by querying it back. The PACS is named in a small config file
(:mod:`medimg.pacs.config`); credentials come from the environment or a netrc file only.
:class:`medimg.pacs.local_orthanc.LocalOrthanc` starts a throwaway Orthanc to try it all on.
"""

from medimg.pacs.config import Pacs, load_pacs
from medimg.pacs.connect import VIAS, connect

__all__ = ["VIAS", "Pacs", "connect", "load_pacs"]
