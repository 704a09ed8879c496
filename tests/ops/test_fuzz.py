"""Schemathesis against /openapi.json, in process: no 5xx, and every response matches the documented schema.

Bounded and deterministic: at most MAX_EXAMPLES generated cases per operation and mode (valid and
invalid inputs; derandomized), against
the app with a seeded Redis and a tiny ALS bundle (so a cache miss runs the on-demand scoring). The number
of cases run is printed at the end (``-s``) and written to ``build/fuzz-cases.txt``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.ops.stack import seed, write_tiny_bundle
from tests.serving.conftest import API_KEY, make_config

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MAX_EXAMPLES = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CASES: Counter[str] = Counter()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fuzz_app(redis_server: str, tmp_path_factory: pytest.TempPathFactory):
    import redis

    from serving import create_app

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    seed(client)
    client.close()
    root = tmp_path_factory.mktemp("fuzz")
    write_tiny_bundle(root / "models")
    return create_app(make_config(root, redis_server))


@pytest.fixture(scope="module")
def api_schema(fuzz_app):
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)


def _fuzz(operation, mode: GenerationMode) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        CASES[f"{case.method} {case.path} {mode.value}"] += 1
        case.call_and_validate(headers={"X-API-Key": API_KEY}, checks=CHECKS)

    run()


def test_api_never_answers_5xx_and_matches_its_schema(api_schema) -> None:
    """Valid (positive) and invalid (negative) inputs for every operation of the document."""
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.method.upper()} {operation.path}"
            try:
                _fuzz(operation, mode)
            except Unsatisfiable:
                # No parameters and no body (/healthz, /metrics): there is no invalid request to generate.
                if (
                    mode is not GenerationMode.NEGATIVE
                    or operation.body
                    or len(operation.query)
                    or len(operation.path_parameters)
                ):
                    failures.append(f"{label} ({mode.value}): no case could be generated")
            except BaseException as exc:  # noqa: BLE001 - FailureGroup is a BaseExceptionGroup: collect them all
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    total = sum(CASES.values())
    lines = [f"{op}: {n}" for op, n in sorted(CASES.items())] + [f"total: {total}"]
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "fuzz-cases.txt").write_text("\n".join(lines) + "\n")
    print("\nschemathesis cases:\n  " + "\n  ".join(lines))
    assert failures == []
