"""A uint8 cache of decoded images, so that a folder or zip of JPEGs is decoded once and later runs start at once.

A cache entry is one ``torch.save`` file holding the decoded images, labels and class names of one split, named by a
key over the source's identity (resolved path, size and modification time of a zip file; path and modification times
of the split and class folders of a directory) and every decoding parameter (split, image size, channels, per-class
limit). A changed source gets a new key, so a stale entry is never read; it is simply left behind. A file rewritten in
place inside a class folder does not change its folder's modification time: delete the cache after doing that.

The cache lives, in order of preference:

1. in ``cache_dir`` if the caller passes one;
2. in the folder named by the environment variable ``MILESTONES_CACHE`` (CI points it at a temporary folder);
3. beside the source: ``<source>.cache/`` (``cifar10-jpg-q75.zip.cache/``);
4. under the data root, ``<root>/cache/``, when the source's folder is read-only;
5. in ``~/.cache/milestones/cache/``.

Entries are looked for in all of them and written to the first that is writable. A folder counts as read-only when
its mode has no write bit (``dr-xr-xr-x``, as ``shared/data``) even for root, who could write there anyway. Writes
go through a temporary file and ``os.replace``, so an interrupted write never leaves an entry that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

ENV_CACHE = "MILESTONES_CACHE"
DEFAULT_CACHE = Path("~/.cache/milestones/cache")
#: Bump when the decoding changes (resampling, ordering, colour conversion): every old entry becomes a miss.
CACHE_VERSION = 1


def fingerprint(path: Path, parts: Sequence[str] = ()) -> dict[str, Any]:
    """What identifies a source's contents cheaply, without reading them.

    A file (a zip): its resolved path, size and modification time. A directory: its resolved path and the
    modification times of ``path / parts[0]`` (the split folder) and of each folder directly inside it (the class
    folders), which change whenever a file is added, removed or renamed in them.
    """
    path = path.resolve()
    st = path.stat()
    if path.is_file():
        return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    base = path.joinpath(*parts)
    folders = {}
    if base.is_dir():
        folders = {e.name: e.stat().st_mtime_ns for e in os.scandir(base) if e.is_dir()}
        folders["."] = base.stat().st_mtime_ns
    return {"path": str(path), "split_dir": str(base), "folders": dict(sorted(folders.items()))}


def cache_key(identity: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """A 20-hex-digit key over the source's fingerprint, the decoding parameters and :data:`CACHE_VERSION`."""
    blob = json.dumps({"v": CACHE_VERSION, "source": identity, "params": params}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=10).hexdigest()


def cache_dirs(source: Path, root: Path | None = None, cache_dir: str | Path | None = None) -> list[Path]:
    """Folders to look for (and write) entries of ``source`` in, in order of preference (see the module docstring)."""
    if cache_dir not in (None, ""):
        return [Path(cache_dir).expanduser()]
    dirs = []
    env = os.environ.get(ENV_CACHE)
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(source.parent / f"{source.name}.cache")
    if root is not None:
        dirs.append(Path(root).expanduser() / "cache")
    dirs.append(DEFAULT_CACHE.expanduser())
    return list(dict.fromkeys(dirs))  # drop duplicates, keep the order


def load_entry(name: str, dirs: Sequence[Path]) -> dict[str, Any] | None:
    """The first readable entry called ``name`` in ``dirs``, or None. A damaged entry is skipped (and logged)."""
    for folder in dirs:
        path = folder / name
        if not path.is_file():
            continue
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file: decode again rather than fail
            log.warning("ignoring unreadable cache entry %s (%s)", path, err)
            continue
        if isinstance(entry, dict) and entry.get("version") == CACHE_VERSION:
            entry["path"] = str(path)
            return entry
    return None


def writable(folder: Path) -> bool:
    """Whether ``folder`` (or, if missing, its nearest existing parent) may be written: permitted to this user and
    not marked read-only by its mode bits (a read-only data folder stays untouched even when running as root)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK) and bool(existing.stat().st_mode & 0o222)


def save_entry(name: str, dirs: Sequence[Path], entry: Mapping[str, Any]) -> Path | None:
    """Write ``entry`` as ``name`` into the first writable folder of ``dirs``; None if none is."""
    for folder in dirs:
        if not writable(folder):
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".part")
        except OSError:
            continue  # read-only (shared/data in CI) or not creatable: try the next place
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save({**entry, "version": CACHE_VERSION}, f)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache is for everyone to read
            os.replace(tmp, folder / name)
            return folder / name
        except OSError as err:  # e.g. the disk filled up: the data is still returned, just not cached
            log.warning("could not write cache entry %s (%s)", folder / name, err)
        finally:
            tmp.unlink(missing_ok=True)
    log.warning("no writable cache folder among %s; decoded images are not cached", ", ".join(map(str, dirs)))
    return None
