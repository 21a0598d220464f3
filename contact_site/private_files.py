"""Files and folders readable by the site's own user alone, whatever the umask.

The database, the development key, exports, captured mails and lock files hold
messages, addresses and secrets: files are 0600 and folders 0700. A mode passed
to open() or mkdir() only loses bits to the umask, so each is set exactly
afterwards; a file or folder of ours left wider by an earlier release is
narrowed the same way. Another user's file is left as it is: we cannot change
its mode, and refusing to start over it would help nobody.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def make_private(path: str | os.PathLike[str], mode: int = PRIVATE_FILE) -> None:
    """Give an existing file or folder of ours exactly `mode`."""
    info = os.stat(path)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode)


def make_private_folder(path: str | os.PathLike[str]) -> None:
    """Create the folder as 0700 (its missing parents as the umask has them), or narrow it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, PRIVATE_FOLDER)
    except FileExistsError:
        pass
    make_private(path, PRIVATE_FOLDER)


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """os.open for a 0600 file: one it creates is 0600, one of ours is made so before use."""
    fd = os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a new 0600 file (never over an existing one or through a symlink)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(open_private(path, flags), "wb") as out:
        out.write(data)
