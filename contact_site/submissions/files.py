"""Uploaded files on disk: a checked file is stored under its submission's folder.

Files are 0600 and folders 0700 whatever the umask: only the site's own user (the
web processes and the delivery workers, which must run as that user) can read them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flask import current_app

CHUNK = 64 * 1024
PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


@dataclass
class CheckedUpload:
    """A file that passed every check, with its neutral name and sniffed type."""

    stream: IO[bytes]
    filename: str
    extension: str
    content_type: str
    size: int


def store_file(upload: CheckedUpload, folder: Path, stem: str = "attachment") -> Path:
    """Write the file under `folder` (in UPLOAD_FOLDER) as `<stem>.<extension>`, flushed."""
    root = Path(current_app.config["UPLOAD_FOLDER"]).resolve()
    folder = folder.resolve()
    if folder.parent != root:
        raise ValueError(f"refusing to store outside {root}")
    root.parent.mkdir(parents=True, exist_ok=True)  # above the uploads: the operator's modes
    root_is_new = make_private_folder(root, exist_ok=True)
    make_private_folder(folder, exist_ok=True)  # the submission's second file finds it there
    path = folder / f"{stem}.{upload.extension}"
    upload.stream.seek(0)
    with _create_private_file(path) as out:
        while chunk := upload.stream.read(CHUNK):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    _fsync_dir(folder)
    _fsync_dir(root)
    if root_is_new:
        _fsync_dir(root.parent)
    return path


def make_private_folder(path: Path, exist_ok: bool = False) -> bool:
    """Create `path` as 0700 whatever the umask; False if it was already there (`exist_ok`)."""
    try:
        os.mkdir(path, PRIVATE_FOLDER)
    except FileExistsError:
        if not exist_ok:
            raise
        return False
    # mkdir's mode passes through the umask (0o277 would leave it unwritable): set it exactly.
    os.chmod(path, PRIVATE_FOLDER)
    return True


def _create_private_file(path: Path) -> IO[bytes]:
    """A new file (never an existing one or a symlink) opened for writing, mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)  # the umask may have taken bits away; set exactly 0600
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the new directory entry itself durable, not only the file's bytes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
