"""Documentation stays true: diagrams rendered from their current sources."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIAGRAMS = ROOT / "docs" / "diagrams"


def test_every_diagram_is_rendered_from_its_current_source():
    import hashlib

    manifest = dict(
        reversed(line.split("  ", 1)) for line in (DIAGRAMS / "rendered.sha256").read_text().splitlines() if line
    )
    sources = sorted(DIAGRAMS.glob("*.dot"))
    assert [s.name for s in sources] == sorted(manifest), "a diagram source was added or removed: run `make docs`"
    for src in sources:
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        assert manifest[src.name] == digest, f"{src.name} changed after it was rendered: run `make docs`"
        for fmt in ("svg", "png"):
            out = src.with_suffix(f".{fmt}")
            assert out.is_file() and out.stat().st_size > 1000, f"{out.name} is missing: run `make docs`"


def test_every_diagram_box_names_an_existing_module():
    import re

    for src in DIAGRAMS.glob("*.dot"):
        for path in re.findall(r"((?:jobs|recsys|serving|conf|docs)/[\w/.]*)", src.read_text()):
            target = ROOT / path.rstrip("/")
            assert target.exists(), f"{src.name} names {path}, which does not exist"


def test_configuration_doc_is_current_and_complete():
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import gen_config_docs

    from recsys.config import env_names

    assert (ROOT / "docs" / "configuration.md").read_text() == gen_config_docs.render(), "run `make docs`"
    documented = {path for path, value, _ in gen_config_docs.documented_keys((ROOT / "conf" / "base.yaml").read_text())
                  if value != "(section)"}
    fields = set(env_names().values())
    assert fields - documented == set(), "config fields missing from conf/base.yaml"
    assert documented - fields == set(), "conf/base.yaml keys that no config field reads"


def test_api_doc_is_generated_from_the_current_openapi_document():
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import gen_api_docs

    text = gen_api_docs.render()
    assert (ROOT / "docs" / "api.md").read_text() == text, "docs/api.md is stale: run `make docs`"
    for path in ("/v1/users/{userId}/recommendations", "/v1/interactions", "/v1/popular", "/healthz"):
        assert f" {path}\n" in text
