"""Which PACS, and how to log in: a small TOML file names each PACS once; credentials never live in it.

The file is ``$MEDIMG_PACS_CONFIG``, else ``$XDG_CONFIG_HOME/medimg/pacs.toml`` (``~/.config/medimg/pacs.toml``)::

    [research]                                   # the name `medimg pacs --pacs research` uses
    dicomweb = "https://pacs.example.org/dicom-web"   # DICOMweb root (QIDO-RS, WADO-RS, STOW-RS)
    host = "pacs.example.org"                    # DIMSE: host, port and the PACS's AE title ...
    port = 104
    ae_title = "ORTHANC"
    calling_ae = "MEDIMG"                        # ... medimg's own AE title, registered on the PACS
    receive_port = 11113                         # where medimg's storage SCP listens for C-MOVE
    move_ae = "MEDIMG"                           # the C-MOVE destination (default: calling_ae)

Credentials (HTTP basic authentication for DICOMweb) come only from the environment --
``MEDIMG_PACS_<NAME>_USER`` / ``MEDIMG_PACS_<NAME>_PASSWORD``, or ``MEDIMG_PACS_USER`` / ``MEDIMG_PACS_PASSWORD``
-- or from a netrc file (``netrc = "path"`` in the entry, else ``$NETRC``, else ``~/.netrc``; ``machine`` is the
DICOMweb host). Never from the command line (a flag lands in the shell history and ``ps``), never from the TOML
file; a URL with ``user:password@`` in it is refused. Nothing here puts a password into a message or a log:
:meth:`Pacs.where` is the redacted form every message uses.
"""

from __future__ import annotations

import netrc
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tomllib

from medimg.errors import ConfigError

__all__ = ["DEFAULT_CALLING_AE", "Pacs", "config_path", "load_pacs", "redact_url"]

DEFAULT_CALLING_AE = "MEDIMG"
ENV_CONFIG = "MEDIMG_PACS_CONFIG"
_KEYS = {"dicomweb", "host", "port", "ae_title", "calling_ae", "receive_port", "move_ae", "netrc", "timeout"}


def redact_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (for messages and logs)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Pacs:
    """One PACS: its DICOMweb root and/or its DIMSE address (host, port, called AE title ``ae_title``)."""

    name: str
    dicomweb: str | None = None
    host: str | None = None
    port: int | None = None
    ae_title: str | None = None
    calling_ae: str = DEFAULT_CALLING_AE
    receive_port: int | None = None
    move_ae: str | None = None
    netrc: str | None = None
    timeout: float = 30.0

    def where(self) -> str:
        """``name (url | AE@host:port)``, credentials removed: what messages show."""
        places = [redact_url(self.dicomweb)] if self.dicomweb else []
        if self.host:
            places.append(f"{self.ae_title or '?'}@{self.host}:{self.port}")
        return f"PACS {self.name!r} ({', '.join(places) or 'no address'})"

    def require_dicomweb(self) -> str:
        if not self.dicomweb:
            raise ConfigError(f'{self.where()} has no DICOMweb URL; add `dicomweb = "..."` to {config_path()}')
        return self.dicomweb

    def require_dimse(self) -> tuple[str, int, str]:
        if not (self.host and self.port and self.ae_title):
            raise ConfigError(
                f"{self.where()} needs host, port and ae_title for DICOM networking; add them to {config_path()}"
            )
        return self.host, self.port, self.ae_title

    @property
    def destination_ae(self) -> str:
        """The AE title C-MOVE sends to: ``move_ae``, else ``calling_ae``."""
        return self.move_ae or self.calling_ae

    def credentials(self) -> tuple[str, str] | None:
        """(user, password) from the environment or the netrc file, or None (no authentication)."""
        tag = re.sub(r"[^A-Z0-9]", "_", self.name.upper())
        for prefix in (f"MEDIMG_PACS_{tag}_", "MEDIMG_PACS_"):
            user, password = os.environ.get(prefix + "USER"), os.environ.get(prefix + "PASSWORD")
            if user and password is not None:
                return user, password
        return self._netrc_credentials()

    def _netrc_credentials(self) -> tuple[str, str] | None:
        host = urlsplit(self.dicomweb).hostname if self.dicomweb else self.host
        path = Path(self.netrc or os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
        if not host or not path.is_file():
            return None
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (netrc.NetrcParseError, OSError) as exc:
            # the parser's message quotes the line, which may hold a password: give only the line number
            line = getattr(exc, "lineno", "?")
            raise ConfigError(f"cannot read the netrc file (line {line}); fix its syntax", path) from None
        if entry is None:
            return None
        login, _, password = entry
        return login, password or ""


def config_path() -> Path:
    """The PACS configuration file medimg reads (it need not exist)."""
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser()
    return base / "medimg" / "pacs.toml"


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"not valid TOML ({exc}); see `medimg pacs --help` for the format", path) from None


def _entry(name: str, table: Any, path: Path) -> Pacs:
    if not isinstance(table, dict):
        raise ConfigError(f"[{name}] must be a table of settings", path)
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(
            f"[{name}] has unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_KEYS))}", path
        )
    pacs = Pacs(name=name, **table)
    _refuse_userinfo(pacs, f"{path} [{name}]")
    return pacs


def _refuse_userinfo(pacs: Pacs, where: str) -> None:
    if pacs.dicomweb and urlsplit(pacs.dicomweb).username is not None:
        raise ConfigError(
            f"{where}: the DICOMweb URL {redact_url(pacs.dicomweb)} carries a user name or password; remove it and "
            "set MEDIMG_PACS_USER / MEDIMG_PACS_PASSWORD or a netrc entry instead"
        )


def load_pacs(name: str | None = None, **overrides: Any) -> Pacs:
    """The PACS called ``name`` in the configuration file (the only one there when ``name`` is None), with the
    non-None ``overrides`` (command-line flags: dicomweb, host, port, ae_title, calling_ae, receive_port) applied.

    With no file and no name, the overrides alone describe the PACS (named ``cli``).
    """
    path = config_path()
    tables = _read_config(path)
    given = {k: v for k, v in overrides.items() if v is not None}
    if name is None and not tables:
        if not given:
            raise ConfigError(f"no PACS configured: write {path} or pass --url / --host --port --ae")
        pacs = Pacs(name="cli")
    elif name is None:
        if len(tables) != 1:
            raise ConfigError(f"{len(tables)} PACS are configured ({', '.join(tables)}); choose one with --pacs", path)
        name = next(iter(tables))
        pacs = _entry(name, tables[name], path)
    elif name not in tables:
        raise ConfigError(f"no PACS named {name!r}; configured: {', '.join(tables) or 'none'}", path)
    else:
        pacs = _entry(name, tables[name], path)
    pacs = replace(pacs, **given)
    _refuse_userinfo(pacs, "--url")
    return pacs
