"""Renders docs/diagrams/*.dot to SVG and PNG with Graphviz and records each source's hash.

`make docs` runs it; tests/test_docs.py fails when a source changed after its rendering (the hash recorded in
docs/diagrams/rendered.sha256 no longer matches).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

DIAGRAMS = Path(__file__).resolve().parents[1] / "docs" / "diagrams"
MANIFEST = DIAGRAMS / "rendered.sha256"


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> int:
    dot = shutil.which("dot")
    if dot is None:
        print("error: Graphviz `dot` is missing: run `make setup` (it installs graphviz)", file=sys.stderr)
        return 2
    lines = []
    for src in sorted(DIAGRAMS.glob("*.dot")):
        for fmt in ("svg", "png"):
            out = src.with_suffix(f".{fmt}")
            extra = ["-Gdpi=110"] if fmt == "png" else []
            subprocess.run([dot, f"-T{fmt}", *extra, str(src), "-o", str(out)], check=True)
        lines.append(f"{source_hash(src)}  {src.name}")
        print(f"rendered {src.name} -> {src.stem}.svg, {src.stem}.png")
    MANIFEST.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
