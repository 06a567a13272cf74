"""Which server paths and URLs a request may name, decided in one place.

Requests name files on the server (dataset sources, training files, models, adapters, evaluation
data) and records carry those names to the job services. Every one of them is read only when,
with ``~``, symlinks and ``..`` resolved, it lies under a configured root: MODELS_DIR,
DATASETS_DIR, JOBS_DIR or IMPORT_DIR (where operators put users' files). The controller checks
when a request comes in; each job service checks again before it reads, so a record written by
anyone cannot make a service read elsewhere. A refusal reads the same for a path that does not
exist and one outside the roots, so no answer tells what exists elsewhere on the server.

References that are not paths: a Hub id (``org/name``) where the field allows one, a built
dataset id (``ds-...``), a fine-tuning job id (``ftjob-...``) and a published model's name (a
folder of MODELS_DIR).

URLs (dataset sources) are fetched over http(s) only, from allow-listed hosts, and never from a
private, loopback, link-local, multicast or reserved address unless the operator listed that very
host by name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from shared.settings import CommonSettings

# (setting, folder as the environment names it), in the order messages list them.
ROOT_SETTINGS = (
    ("models_dir", "MODELS_DIR"),
    ("datasets_dir", "DATASETS_DIR"),
    ("jobs_dir", "JOBS_DIR"),
    ("import_dir", "IMPORT_DIR"),
)
DATASET_ID_PREFIX = "ds-"
DATASET_FILE = "dataset.jsonl"
# A Hugging Face Hub repository id: ``org/name``, neither part starting with a dot.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PATH_STARTS = ("/", "~", ".")

Kind = Literal["file", "folder", "file or folder"]


class RefusedReference(ValueError):
    """A path, id or URL a request may not use; the message is safe to show to the caller."""


@dataclass(frozen=True)
class FolderKind:
    """What a model-like folder must hold, and how to say it does not."""

    what: str
    markers: tuple[str, ...]
    lacking: str


MODEL_FOLDER = FolderKind(
    "model folder", ("config.json",), "is not a model folder (no config.json)"
)
ADAPTER_FOLDER = FolderKind(
    "LoRA adapter folder",
    ("adapter_config.json",),
    "is not a LoRA adapter folder (no adapter_config.json)",
)
TOKENIZER_FOLDER = FolderKind(
    "tokenizer folder",
    ("tokenizer.json", "tokenizer_config.json"),
    "is not a folder holding a tokenizer",
)


def written_as_path(text: str) -> bool:
    """Written as a path (absolute, or starting with ``~`` or ``.``), whatever exists."""
    return text.startswith(_PATH_STARTS)


@dataclass(frozen=True)
class AllowedRoots:
    """The folders a request may name paths under, resolved once."""

    folders: tuple[tuple[str, Path], ...]

    @classmethod
    def of(cls, common: CommonSettings) -> AllowedRoots:
        return cls(
            tuple((name, _resolved(getattr(common, field))) for field, name in ROOT_SETTINGS)
        )

    @property
    def models_dir(self) -> Path:
        return dict(self.folders)["MODELS_DIR"]

    def names(self) -> str:
        return ", ".join(name for name, _ in self.folders)

    def refusal(self, text: Any, what: str) -> RefusedReference:
        """The one message for a path that is missing or outside the roots."""
        return RefusedReference(
            f"{str(text)!r} is not a {what} under an allowed folder ({self.names()})"
        )

    def inside(self, path: str | Path) -> Path | None:
        """``path`` resolved (``~``, symlinks, ``..``; relative to the working folder) when it
        lies under a root; else None."""
        resolved = _resolved(path)
        if resolved is None:
            return None
        return resolved if any(resolved.is_relative_to(root) for _, root in self.folders) else None

    def existing(self, text: str | Path, kind: Kind = "file", what: str | None = None) -> Path:
        """The resolved path of an existing ``kind`` under the roots; else ``refusal``."""
        path = self.inside(text)
        if path is None or not _is_kind(path, kind):
            raise self.refusal(text, what or kind)
        return path


def _resolved(path: str | Path | None) -> Path | None:
    if path is None:
        return None
    try:
        return Path(path).expanduser().resolve()
    except (OSError, RuntimeError, ValueError):  # unknown ~user, symlink loop, NUL byte
        return None


def _is_kind(path: Path, kind: Kind) -> bool:
    if kind == "file":
        return path.is_file()
    if kind == "folder":
        return path.is_dir()
    return path.exists()


def model_folder(text: str, roots: AllowedRoots, kind: FolderKind = MODEL_FOLDER) -> Path:
    """A folder under the roots that holds ``kind``'s files."""
    folder = roots.existing(text, "folder", kind.what)
    if not any((folder / marker).is_file() for marker in kind.markers):
        raise RefusedReference(f"{text!r} {kind.lacking}")
    return folder


def resolve_model(
    text: str,
    roots: AllowedRoots,
    *,
    hub_ids: bool = True,
    kind: FolderKind = MODEL_FOLDER,
) -> str:
    """A model a request names, as the folder (resolved) or Hub id a service loads.

    A path (absolute, ``~``, ``.``; or relative to the working folder and found under a root) is
    a folder under the roots holding the model; a name without ``/`` is the published model
    ``MODELS_DIR/<name>``; ``org/name`` is a Hub id when ``hub_ids`` allows one.
    """
    relative_inside = "/" in text and (found := roots.inside(text)) is not None and found.is_dir()
    if written_as_path(text) or relative_inside:
        return str(model_folder(text, roots, kind))
    if "/" not in text:
        published = roots.inside(roots.models_dir / text)
        if published is not None and published.is_dir() and published != roots.models_dir:
            return str(model_folder(str(published), roots, kind))
        hub = " nor a Hub id (org/name)" if hub_ids else ""
        raise RefusedReference(f"{text!r} is neither a model under MODELS_DIR{hub}")
    if hub_ids and HUB_ID.match(text):
        return text
    raise roots.refusal(text, kind.what)


def check_loadable(reference: str, roots: AllowedRoots, kind: FolderKind = MODEL_FOLDER) -> str:
    """At run time: a recorded model reference is a Hub id (``org/name``, or a bare name) that
    names no folder here, or a folder under the roots holding ``kind``'s files."""
    if not written_as_path(reference) and (HUB_ID.match(reference) or "/" not in reference):
        local = _resolved(reference)
        if local is None or not local.exists():
            return reference
    return str(model_folder(reference, roots, kind))


def is_dataset_id(text: str) -> bool:
    return text.startswith(DATASET_ID_PREFIX) and "/" not in text


def resolve_data_file(text: str, roots: AllowedRoots, datasets: Any) -> Path:
    """A training or validation file: a built dataset id (``ds-...``) becomes its
    ``dataset.jsonl``; otherwise a file under the roots. ``datasets`` is the datasets store."""
    if not is_dataset_id(text):
        return roots.existing(text, "file")
    dataset = datasets.get(text)
    if dataset is None:
        raise RefusedReference(f"unknown dataset {text!r}")
    if dataset.get("status") != "succeeded":
        raise RefusedReference(f"dataset {text} is not ready (status {dataset.get('status')})")
    built = roots.inside(Path(str(dataset.get("path"))) / DATASET_FILE)
    if built is None or not built.is_file():
        raise RefusedReference(f"dataset {text} has no {DATASET_FILE} under {roots.names()}")
    return built


def own_folder(path: Any, parent: str | Path) -> Path | None:
    """``path`` resolved when it is one folder directly in ``parent`` (a job's or a dataset's
    own folder, whatever its record says); else None."""
    folder, root = _resolved(str(path)), _resolved(parent)
    return folder if folder is not None and root is not None and folder.parent == root else None


def safe_child(folder: Path, name: str) -> Path | None:
    """``folder/name`` when ``name`` is one plain path component (no ``/``, not ``..``)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return None
    return folder / name


# -- URLs -----------------------------------------------------------------------------------

Resolver = Callable[[str, int], Iterable[str]]


def system_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (raises OSError when it does not)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_internal(address: str) -> bool:
    """Private, loopback, link-local, multicast, reserved or unspecified: not the internet."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


@dataclass(frozen=True)
class UrlTarget:
    """A URL that passed the policy: its host and the addresses it resolved to."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs may be fetched: http(s), an allow-listed host, no internal address unless the
    host is listed by its exact name (``setting`` names the allow-list in messages)."""

    allowed_hosts: tuple[str, ...]
    setting: str = "INGEST_URL_ALLOWED_HOSTS"

    @classmethod
    def parse(cls, hosts: str) -> UrlPolicy:
        return cls(tuple(h.strip().lower().rstrip(".") for h in hosts.split(",") if h.strip()))

    def listed_by_name(self, host: str) -> bool:
        return host in self.allowed_hosts

    def host_allowed(self, host: str) -> bool:
        """Listed by name, or a name (never an address) under a listed ``*.domain``."""
        if self.listed_by_name(host):
            return True
        if _is_address(host):
            return False
        wildcards = [p[1:] for p in self.allowed_hosts if p.startswith("*.")]
        return any(host.endswith(suffix) for suffix in wildcards)

    def check(
        self, url: str, resolve: Resolver = system_addresses, *, unresolved_ok: bool = False
    ) -> UrlTarget:
        """``url`` if it may be fetched (``resolve`` looks its host up); else RefusedReference.
        A host that cannot be resolved is refused, unless ``unresolved_ok`` (a check ahead of
        time, where the fetcher checks again)."""
        target = self.check_name(url)
        try:
            addresses = tuple(resolve(target.host, target.port))
        except OSError:
            if unresolved_ok:
                return target
            raise RefusedReference(f"{url!r}: host {target.host!r} cannot be resolved") from None
        self.check_addresses(target.host, addresses, url)
        return UrlTarget(url, target.host, target.port, addresses)

    def check_name(self, url: str) -> UrlTarget:
        """The checks that need no lookup: scheme and host."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise RefusedReference(f"{url!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise RefusedReference(f"{url!r}: only http and https URLs are fetched")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise RefusedReference(f"{url!r} names no host")
        if not self.host_allowed(host):
            listed = ", ".join(self.allowed_hosts) or "none"
            raise RefusedReference(f"{url!r}: host {host!r} is not in {self.setting} ({listed})")
        default_port = 443 if parts.scheme == "https" else 80
        return UrlTarget(url, host, port or default_port, ())

    def check_addresses(self, host: str, addresses: Iterable[str], url: str) -> None:
        if self.listed_by_name(host):
            return
        if not addresses or any(is_internal(address) for address in addresses):
            raise RefusedReference(
                f"{url!r}: host {host!r} resolves to a private or internal address "
                f"(list it by name in {self.setting} to allow it)"
            )
