"""Finding the binaries Debian packages install."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def system_binary(name: str) -> Path | None:
    """A binary on PATH or in /usr/sbin: Debian installs its daemons' binaries (dockerd, pgbouncer, nginx,
    debootstrap) there, off an ordinary user's PATH."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else None)
    return Path(found) if found else None
