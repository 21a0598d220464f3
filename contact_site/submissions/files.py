"""Uploaded files on disk: a checked file is stored under its submission's folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from flask import current_app

CHUNK = 64 * 1024


@dataclass
class CheckedUpload:
    """A file that passed every check, with its neutral name and sniffed type."""

    stream: IO[bytes]
    filename: str
    extension: str
    content_type: str
    size: int


def store_file(upload: CheckedUpload, folder: Path) -> Path:
    """Write the file under `folder` with a generated name, flushed to disk."""
    root = Path(current_app.config["UPLOAD_FOLDER"]).resolve()
    folder = folder.resolve()
    if root not in folder.parents:
        raise ValueError(f"refusing to store outside {root}")
    folder.mkdir(parents=True)
    path = folder / f"attachment.{upload.extension}"
    upload.stream.seek(0)
    with path.open("xb") as out:
        while chunk := upload.stream.read(CHUNK):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    _fsync_dir(folder)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the new directory entry itself durable, not only the file's bytes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
