"""Generates docs/configuration.md from conf/base.yaml (values and comments) and the config dataclasses.

`make docs` runs it; tests/test_docs.py checks that the file is current and that every dataclass field has a
documented key in base.yaml and no key is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.config import env_names  # noqa: E402

BASE = ROOT / "conf" / "base.yaml"
OUT = ROOT / "docs" / "configuration.md"
LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<value>[^#]*)(?:#\s?(?P<comment>.*))?$")


def documented_keys(text: str) -> list[tuple[tuple[str, ...], str, str]]:
    """Every leaf key of base.yaml as (path, value, comment), in file order."""
    out: list[tuple[tuple[str, ...], str, str]] = []
    stack: list[tuple[int, str]] = []
    for raw in text.splitlines():
        m = LINE.match(raw)
        if not m or raw.lstrip().startswith("#"):
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        value = m["value"].strip()
        path = (*[k for _, k in stack], m["key"])
        if value == "":
            stack.append((indent, m["key"]))
            if m["comment"] and len(path) > 1:
                out.append((path, "(section)", m["comment"].strip()))
            continue
        out.append((path, value, (m["comment"] or "").strip()))
    return out


def render() -> str:
    keys = documented_keys(BASE.read_text())
    env = {v: k for k, v in env_names().items()}
    lines = [
        "# Configuration",
        "",
        "Generated from `conf/base.yaml` by `make docs` (`scripts/gen_config_docs.py`); a test fails when it is stale.",
        "",
        "Files: `conf/base.yaml` is always loaded; the file given with `--conf-file` (default `conf/local.yaml`)",
        "overlays it; then environment variables override single keys. An unknown key, a wrongly typed value or a",
        "missing file is an error that names it. `conf/cluster.example.yaml` shows a cluster setup.",
        "",
        "| key | default | environment variable | meaning |",
        "|---|---|---|---|",
    ]
    for path, value, comment in keys:
        var = env.get(path, "")
        lines.append(f"| `{'.'.join(path)}` | `{value}` | {f'`{var}`' if var else ''} | {comment} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
