"""The project's packages as one zip for ``spark-submit --py-files``; prints its path (used by spark-submit.sh).

The zip is named by a hash of what it holds (``build/recsys-src-<hash>.zip``), written once through a temporary
file and a rename, and never rewritten. Python reads a zip on ``sys.path`` by its path, again for each module
imported later, so a job must never see its zip change under it. The earlier single ``build/recsys-src.zip``
was rewritten by every run: a second job started beside a running one (a nightly pipeline next to
``stream-ingest``, or two evaluations) truncated it mid-read, and the running job failed with
``zlib.error: Error -5 while decompressing data``. Zips of other contents untouched for a week are removed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

PACKAGES = ("recsys", "jobs")
KEEP_SECONDS = 7 * 86400


def sources(root: Path) -> list[Path]:
    """The ``.py`` files of :data:`PACKAGES` under ``root``, in a fixed order."""
    return [f for pkg in PACKAGES for f in sorted((root / pkg).rglob("*.py"))]


def build(root: Path) -> Path:
    """Writes the zip of ``root``'s packages into ``root/build`` unless one with the same contents exists;
    removes the other ``recsys-src*.zip`` files not modified for :data:`KEEP_SECONDS`; returns the zip's path.

    Example:
        >>> build(Path("."))
        PosixPath('build/recsys-src-3f2a9c0d1e4b5a67.zip')
    """
    out = root / "build"
    out.mkdir(parents=True, exist_ok=True)
    files = sources(root)
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    target = out / f"recsys-src-{digest.hexdigest()[:16]}.zip"
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=out, prefix=".recsys-src-", suffix=".zip.tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would hide the zip from other users of a shared build
        try:
            with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in files:
                    zf.write(f, f.relative_to(root).as_posix())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    cutoff = time.time() - KEEP_SECONDS
    for old in out.glob("recsys-src*.zip"):
        try:
            if old != target and old.stat().st_mtime < cutoff:
                old.unlink()
        except FileNotFoundError:  # another run removed it first
            pass
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the project folder (holding recsys/ and jobs/)")
    args = parser.parse_args()
    print(build(args.root.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
