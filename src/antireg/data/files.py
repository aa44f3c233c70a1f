"""Locating, verifying and downloading data files.

Every file a loader reads is described by a :class:`FileSpec` and goes through
:func:`require`, which finds it under the data directory, downloads it when
asked to, and verifies its checksum. Problems surface as one :class:`DataError`
whose message names the file, the path that was tried, and the fix.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from antireg.errors import DataError  # its home; antireg.data re-exports it

ENV_VAR = "ANTIREG_DATA_DIR"


def default_data_dir() -> Path:
    """``$ANTIREG_DATA_DIR`` if set, else the per-user data folder (platformdirs), e.g.
    ``~/.local/share/antireg`` on Linux, so that data found once is found from any folder."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    import platformdirs

    return Path(platformdirs.user_data_dir("antireg", appauthor=False))


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set.

    Attributes:
        label: the data set's display name, used in messages ("Concrete").
        relpath: path relative to the data directory, with "/" separators.
        url: official HTTPS source of the file, or of the archive that holds it.
        sha256, md5: expected digests; sha256 is checked when known, else md5.
        accept: a second check for files whose bytes legitimately differ between
            genuine copies (it must return True for a genuine file); used only
            when the digest does not match.
        hint: a sentence added to the "not found" message, e.g. an alternative.
    """

    label: str
    relpath: str
    url: str
    sha256: str | None = None
    md5: str | None = None
    accept: Callable[[Path], bool] | None = None
    hint: str = ""


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in chunks so large batches do not fill memory."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checksum_problem(path: Path, spec: FileSpec) -> str | None:
    """None when ``path`` holds the genuine file described by ``spec``, else what is wrong."""
    algorithm, expected = ("sha256", spec.sha256) if spec.sha256 else ("md5", spec.md5)
    if expected is None:
        raise ValueError(f"FileSpec for {spec.relpath} has no checksum")
    actual = file_digest(path, algorithm)
    if actual == expected or (spec.accept is not None and spec.accept(path)):
        return None
    extra = " and its contents do not match the genuine values either" if spec.accept else ""
    return f"{algorithm} is {actual}, expected {expected}{extra}"


def verify(path: Path, spec: FileSpec) -> None:
    """Raise DataError unless ``path`` holds the genuine file described by ``spec``."""
    problem = checksum_problem(path, spec)
    if problem:
        raise DataError(
            f"{spec.label} file {path} failed verification: {problem}. The file is corrupt or "
            f"not the genuine one; delete it and download it again from {spec.url}."
        )


def fetch(url: str, dest: Path) -> None:
    """Copy the resource at ``url`` to ``dest`` with pooch (streamed; a progress bar
    when stderr is a terminal). Integrity is :func:`download`'s checksum, not the
    transport's: a redirect or a mirror cannot slip in other bytes."""
    import pooch

    pooch.get_logger().setLevel(logging.WARNING)  # no "Downloading data from ..." chatter
    downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=60)
    pooch.retrieve(url, known_hash=None, fname=dest.name, path=dest.parent, downloader=downloader)


def download(spec: FileSpec, dest: Path) -> None:
    """Download ``spec.url`` to ``dest``: temporary file, verify, then atomic rename.

    Nothing is left at ``dest`` (or beside it) when the download or the check fails.
    """
    if not spec.url.startswith("https://"):
        raise DataError(f"refusing to download {spec.label} from a non-HTTPS URL: {spec.url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Beside dest, so that os.replace is an atomic rename; the pid keeps concurrent runs apart.
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        try:
            fetch(spec.url, tmp)
        except OSError as e:  # requests' errors (HTTP status, connection, TLS) are OSErrors
            raise DataError(f"could not download {spec.label} from {spec.url}: {e}. If this machine is "
                            f"offline, copy the file there from one that is online: {dest}") from e
        problem = checksum_problem(tmp, spec)
        if problem:
            raise DataError(f"{spec.label} download from {spec.url} failed verification: {problem}. "
                            f"Nothing was saved to {dest}.")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def require(spec: FileSpec, data_dir: Path, *, download_missing: bool = False,
            check: bool = True) -> Path:
    """Return the verified path of ``spec`` under ``data_dir``.

    A missing file is downloaded when ``download_missing`` is true, else DataError
    explains where it was expected and how to provide it. ``check=False`` skips
    the checksum (for copies known to differ, such as test fixtures).
    """
    path = data_dir / spec.relpath
    if not path.is_file():
        if not download_missing:
            raise DataError(
                f"{spec.label} data not found at {path}. Pass --data-dir DIR or set "
                f"{ENV_VAR} to the folder holding {spec.relpath}, or download it from "
                f"{spec.url} (load_dataset(..., download=True) does this).{spec.hint}"
            )
        download(spec, path)
    elif check:
        verify(path, spec)
    return path


def extract_tar(archive: Path, dest: Path) -> None:
    """Extract the regular files and folders of a tar archive into ``dest``.

    Members with absolute paths or ``..`` components, links and device files are
    rejected before anything is written, so an archive cannot write outside ``dest``.
    """
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith(("/", "\\")) or ".." in parts or not (m.isfile() or m.isdir()):
                    raise DataError(f"unsafe member {m.name!r} in archive {archive}; not extracted")
            for m in members:
                target = dest.joinpath(*PurePosixPath(m.name).parts)
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"could not extract archive {archive}: {e}") from e
