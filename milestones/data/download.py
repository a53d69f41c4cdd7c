"""Checksummed downloads, used only when the caller asks for them (``download=True`` / ``--download``).

A file is streamed to a hidden temporary file in the destination folder while its digest is computed, checked against
the expected md5 or sha256, and only then renamed into place (``os.replace`` is atomic on one file system), so an
interrupted or corrupted download never leaves a file that looks complete. Mirrors are tried in order, as torchvision
does for MNIST. Nothing here runs at import and the test suite only ever points it at a server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..progress import progress

log = logging.getLogger(__name__)

#: Some hosts (yann.lecun.com) answer 403 to urllib's default agent, so we name ourselves.
USER_AGENT = "milestones/0.1 (python urllib)"
CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset as published: its name under a mirror's base URL and its checksums.

    Attributes:
        name: File name, appended to each mirror's base URL.
        md5: Published md5 of the file (torchvision's tables use md5).
        sha256: Published sha256, checked instead of md5 where known.
    """

    name: str
    md5: str | None = None
    sha256: str | None = None


def _join(base: str, name: str) -> str:
    return base if base.endswith(name) else base.rstrip("/") + "/" + name


def _fetch(url: str, dest: Path, file: RemoteFile, timeout: float) -> None:
    """Download ``url`` to ``dest`` through a temporary file; raise ``ValueError`` on a checksum mismatch."""
    algo, expected = ("sha256", file.sha256) if file.sha256 else ("md5", file.md5)
    digest = hashlib.new(algo) if expected else None
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with progress(total=total, unit="B", desc=file.name, unit_scale=True, unit_divisor=1024) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if digest is not None:
                        digest.update(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise ValueError(f"got {received} of {total} bytes")
        if digest is not None and digest.hexdigest() != expected:
            raise ValueError(f"{algo} mismatch: got {digest.hexdigest()}, expected {expected}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download_file(file: RemoteFile, mirrors: Sequence[str], folder: Path, *, timeout: float = 60.0) -> Path:
    """Fetch ``file`` from the first mirror that serves it with the right checksum.

    Args:
        file: The file and its checksums.
        mirrors: Base URLs, tried in order.
        folder: Destination folder, created if missing; the file lands at ``folder / file.name``.
        timeout: Seconds to wait for each connection or read.

    Returns:
        The path of the verified file.

    Raises:
        DataError: No mirror gave a file with the expected checksum (one line listing each mirror's failure).
    """
    if not mirrors:
        raise DataError(f"no mirror to download {file.name} from; put the file in {folder}/ yourself")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(
            f"cannot create {folder} to download {file.name} into ({err.strerror}); "
            "choose another data root with --data-root or MILESTONES_DATA"
        ) from err
    dest = folder / file.name
    failures = []
    for base in mirrors:
        url = _join(base, file.name)
        log.info("downloading %s", url)
        try:
            _fetch(url, dest, file, timeout)
        except (OSError, http.client.HTTPException, ValueError) as err:
            reason = (
                err.reason
                if isinstance(err, urllib.error.URLError) and not isinstance(err, urllib.error.HTTPError)
                else err
            )
            log.info("download of %s failed: %s", url, reason)
            failures.append(f"{url}: {reason}")
            continue
        return dest
    raise DataError(
        f"could not download {file.name} ({'; '.join(failures)}); "
        f"check the connection or put the file in {folder}/ yourself"
    )
