"""Owner-only state on disk: directories 0700, files 0600.

The state directory holds the database (contacts, leads, outbox payloads, webhook bodies) and the
key that decrypts stored CRM credentials; neither is anyone else's to read on a shared machine.
Directories this creates are 0700 and files 0600 whatever the umask; an existing state directory
or database file is tightened to that on start, so an install made before this rule is fixed by
its next start. Directories the user chose for other things (the parent of a database path given
in CRM_MCP_DATABASE_URL, say /tmp) are created 0700 if missing but never changed if they exist.
On platforms without POSIX modes these are plain mkdir / create.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
_POSIX = os.name == "posix"


def _tighten(path: Path, mode: int) -> None:
    if not _POSIX:
        return
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)
    except PermissionError:  # not ours (e.g. a shared, pre-made directory): say so, carry on
        log.warning("cannot restrict %s to mode %o: not owned by this user", path, mode)


def private_dir(path: Path, *, tighten_existing: bool = True) -> Path:
    """Create `path` (and missing parents) as 0700; tighten it to 0700 if it exists and
    `tighten_existing`. Returns `path`."""
    path = Path(path)
    existed = path.is_dir()
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if tighten_existing or not existed:
        _tighten(path, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as 0600 if it does not exist (race-safe), else tighten it to 0600."""
    path = Path(path)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    _tighten(path, FILE_MODE)
    return path
