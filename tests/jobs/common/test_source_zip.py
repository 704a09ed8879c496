"""The code zip of spark-submit.sh: named by its contents, never rewritten, so side-by-side jobs keep reading theirs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

from jobs.common import source_zip

ROOT = Path(__file__).resolve().parents[3]


def _project(tmp_path: Path) -> Path:
    for rel, text in {
        "recsys/__init__.py": "",
        "recsys/a.py": "A = 1\n",
        "jobs/__init__.py": "",
        "jobs/sub/b.py": "B = 2\n",
        "jobs/sub/notes.txt": "not code\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_the_zip_holds_the_packages_python_files(tmp_path):
    root = _project(tmp_path)
    path = source_zip.build(root)
    assert path.parent == root / "build" and path.name.startswith("recsys-src-")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["jobs/__init__.py", "jobs/sub/b.py", "recsys/__init__.py", "recsys/a.py"]
        assert zf.read("jobs/sub/b.py") == b"B = 2\n"
    assert not list((root / "build").glob("*.tmp"))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_same_sources_reuse_the_zip_without_writing_it(tmp_path):
    root = _project(tmp_path)
    first = source_zip.build(root)
    before = first.stat()
    again = source_zip.build(root)
    after = again.stat()
    assert again == first
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size)


def test_changed_sources_get_a_new_zip_and_the_running_jobs_zip_stays_intact(tmp_path):
    root = _project(tmp_path)
    first = source_zip.build(root)
    reader = zipfile.ZipFile(first)  # a running job's open zip
    (root / "recsys" / "a.py").write_text("A = 10\n")
    second = source_zip.build(root)
    assert second != first
    assert reader.read("recsys/a.py") == b"A = 1\n"
    assert reader.testzip() is None
    reader.close()
    with zipfile.ZipFile(second) as zf:
        assert zf.read("recsys/a.py") == b"A = 10\n"


def test_other_zips_untouched_for_a_week_are_removed_and_the_current_one_kept(tmp_path):
    root = _project(tmp_path)
    current = source_zip.build(root)
    build = root / "build"
    week_old = time.time() - source_zip.KEEP_SECONDS - 60
    old = build / "recsys-src.zip"  # the single zip of earlier versions
    old.write_bytes(b"x")
    recent = build / "recsys-src-0000000000000000.zip"
    recent.write_bytes(b"y")
    for f in (old, current):
        os.utime(f, (week_old, week_old))
    assert source_zip.build(root) == current
    assert sorted(p.name for p in build.iterdir()) == sorted([current.name, recent.name])


def test_the_command_prints_the_path_spark_submit_ships():
    out = subprocess.run(
        [sys.executable, "-m", "jobs.common.source_zip", str(ROOT)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()
    path = Path(out)
    assert path.parent == ROOT / "build" and path.is_file()
    with zipfile.ZipFile(path) as zf:
        assert "jobs/common/source_zip.py" in zf.namelist()
        assert "jobs/run.py" in zf.namelist()
    assert '--py-files "$src_zip"' in (ROOT / "spark-submit.sh").read_text()
