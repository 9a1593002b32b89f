"""Fuzz the REST API from its own OpenAPI document (schemathesis) against the real control plane: no 5xx.

Each operation gets schema-valid ("positive") and schema-violating ("negative") requests, with an authorized
caller in the test's namespace so requests reach Kubernetes; operations on ``{id}`` are also aimed at a connector
that exists. Bounded: at most ``MAX_EXAMPLES`` requests per operation, mode and target.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from tests.e2e.test_api import SEED_BODY

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 30


def test_fuzz_from_openapi_has_no_server_errors(
    api_app: FastAPI, api: TestClient, namespace: str, api_user: Callable[..., dict[str, str]]
) -> None:
    headers = api_user("fuzzer")
    assert (
        api.post(
            "/api/v1/connectors/fuzz", params={"namespace": namespace}, json=SEED_BODY, headers=headers
        ).status_code
        == 201
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app)
    server_errors: list[str] = []
    calls = 0
    skipped: list[str] = []
    statuses: Counter[str] = Counter()

    def run(operation: Any, mode: GenerationMode, path_parameters: dict[str, str] | None) -> None:
        # Connector bodies are expensive to generate (a large schema of nested one-ofs): half per mode for them.
        max_examples = MAX_EXAMPLES // 2 if operation.body else MAX_EXAMPLES
        strategy = operation.as_strategy(
            generation_mode=mode, query={"namespace": namespace}, headers=headers, path_parameters=path_parameters
        )

        @given(case=strategy)
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call()
            statuses[f"{case.method} {response.status_code}"] += 1
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                )

        try:
            check()
        except Unsatisfiable:
            # Nothing to vary in this mode (e.g. no parameter that a negative case could break).
            skipped.append(f"{operation.method.upper()} {operation.path} {mode.value}")

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(operation, mode, None)
            replaces_whole_body = operation.method.lower() == "post" and operation.path == "/api/v1/connectors/{id}"
            if "{id}" in operation.path and not replaces_whole_body:
                run(operation, mode, {"id": "fuzz"})
    print(f"fuzz: {calls} requests; statuses {sorted(statuses.items())}; nothing to vary for: {skipped}")
    assert calls > 200, f"the fuzzer made only {calls} requests"
    assert not server_errors, "\n".join(sorted(set(server_errors))[:20])
