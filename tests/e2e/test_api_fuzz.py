"""Fuzz the REST API from its own OpenAPI document (schemathesis) against the real control plane.

Three runs, each against the app with auth on, in the test's namespace so requests reach Kubernetes:

- per operation: schema-valid ("positive") and schema-violating ("negative") requests from an authorized caller;
  operations on ``{id}`` are also aimed at connectors that exist;
- stateful: the document's ``links`` (`sluice.schemagen.add_links`) chain operations, so sequences such as
  create → get → patch → command Stop → delete run on the connector the create made;
- without rights: no credentials, a token Kubernetes rejects, and a caller without RBAC: every answer is 401/403
  with a JSON error.

Every response of the first two is checked for 5xx and for secrets (`SecretLedger`): no body or header may hold a
value sent in a password-like field during the run, the callers' tokens, or any value of the test namespace's
Secrets (the connectors' credential Secrets and one the test creates for ``*_secret_ref``). Generated passwords
are long random strings (a ``password`` format strategy), so finding one in a response is never a coincidence.
Findings are collected rather than raised (a raise would make Hypothesis replay and shrink against a stateful
server); each test asserts at the end and prints its figures.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable
from requests.structures import CaseInsensitiveDict
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.generation import GenerationMode
from schemathesis.generation.stateful.state_machine import StepInput, StepOutput

from sluice import kinds
from sluice.devstack import ControlPlane
from tests.e2e.test_api import PASSWORD, SEED_BODY
from tests.support.cluster import get_json

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 30
#: Stateful run: scenarios (each a fresh sequence of linked calls), calls per scenario, and a time budget that ends
#: the run first on a slow machine (generating a connector body takes a good part of a second on 2 cores).
STATEFUL_SCENARIOS = 60
STATEFUL_STEPS = 8
STATEFUL_SECONDS = 100.0
#: Requests per operation, mode and caller of the run without rights.
UNAUTHORIZED_EXAMPLES = 5
#: Shorter values are too likely to occur in a response by chance to count as a leak.
SECRET_MIN_LENGTH = 8
#: A Secret the fuzzing caller may read, referenced by the seed connector ``fuzz-ref``.
REF_SECRET = "fuzz-refs"
REF_SECRET_VALUES = {"password": "ref-pw-7f3a9c1e5b", "token": "ref-token-2d8e6a0c4f"}

# Generated passwords: long and random, with characters that JSON and URLs escape, so a response that contains
# one contains it because the API put it there.
schemathesis.openapi.format(
    "password",
    st.text(alphabet=string.ascii_letters + string.digits + '-_.~!@#%^*+="\\é', min_size=12, max_size=32).map(
        lambda s: "pw" + s
    ),
)

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})


def all_operations(schema: Any) -> list[Any]:
    """Every operation of the document; one that schemathesis cannot load fails the test."""
    return [result.ok() for result in schema.get_all_operations()]


def secret_fields(document: dict[str, Any]) -> frozenset[str]:
    """Names of the properties the document marks ``format: password`` (directly or in an ``anyOf``)."""
    found: set[str] = set()

    def is_password(schema: Any) -> bool:
        if not isinstance(schema, dict):
            return False
        return schema.get("format") == "password" or any(is_password(s) for s in schema.get("anyOf", []))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                found.update(name for name, schema in properties.items() if is_password(schema))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return frozenset(found)


class SecretLedger:
    """The secret values sent or stored during one run, and every response, to search the one in the other."""

    def __init__(self, fields: frozenset[str]) -> None:
        assert "password" in fields, f"the document marks no password field as secret: {sorted(fields)}"
        self.fields = fields
        self.values: set[str] = set()
        self.responses: list[tuple[str, str]] = []

    def learn(self, value: Any) -> None:
        if isinstance(value, str) and len(value) >= SECRET_MIN_LENGTH:
            self.values.add(value)

    def learn_body(self, body: Any) -> None:
        """Remember the values of password-like fields anywhere in a request body."""
        if isinstance(body, dict):
            for key, value in body.items():
                if key in self.fields:
                    self.learn(value)
                self.learn_body(value)
        elif isinstance(body, list):
            for value in body:
                self.learn_body(value)

    def learn_secrets(self, control_plane: ControlPlane, namespace: str) -> None:
        """Remember every value of every Secret in ``namespace`` (the API's credential Secrets and the test's)."""
        for item in get_json(control_plane, "secrets", "-n", namespace)["items"]:
            for encoded in (item.get("data") or {}).values():
                self.learn(base64.b64decode(encoded).decode("utf-8", "replace"))

    @staticmethod
    def forms(value: str) -> set[str]:
        """How a value can appear in a response: as is, JSON-escaped (either way), base64."""
        return {
            value,
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
            base64.b64encode(value.encode()).decode(),
        }

    def leaks(self, text: str) -> list[str]:
        return sorted(v for v in self.values if any(form in text for form in self.forms(v)))

    def record(self, label: str, response: Response) -> str:
        text = response.content.decode("utf-8", "replace") + "\n" + json.dumps(response.headers)
        self.responses.append((label, text))
        return text

    def check(self) -> Callable[..., bool | None]:
        """A schemathesis check: the response carries no secret value learned so far."""

        def secrets_not_returned(ctx: Any, response: Response, case: Any) -> bool | None:
            leaked = self.leaks(self.record(f"{case.method} {case.formatted_path}", response))
            if leaked:
                shown = ", ".join(repr(v[:6] + "...") for v in leaked[:3])
                raise AssertionError(f"{len(leaked)} secret value(s) sent or stored in this run came back: {shown}")
            return None

        return secrets_not_returned

    def leaks_in_recorded(self) -> list[str]:
        """Responses that contain a value learned after they were checked (e.g. Secrets read at the end)."""
        return [
            f"{label}: leaks {len(found)} value(s)" for label, text in self.responses if (found := self.leaks(text))
        ]


class Findings:
    """Failures of the checks, deduplicated by operation, status and check, with one example each."""

    def __init__(self) -> None:
        self.examples: dict[str, str] = {}
        self.statuses: Counter[str] = Counter()
        self.calls = 0

    def validate(
        self,
        case: Any,
        response: Response,
        checks: list[Callable[..., bool | None]],
        **kwargs: Any,
    ) -> None:
        self.calls += 1
        self.statuses[f"{case.method} {response.status_code}"] += 1
        try:
            case.validate_response(response, checks=checks, **kwargs)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = f"{case.method} {case.path} -> {response.status_code}: {failure.title}"
                body = response.content.decode("utf-8", "replace")[:300]
                self.examples.setdefault(
                    key, f"{key}\n    {case.method} {case.formatted_path} {failure.message}\n    body: {body}"
                )

    def report(self) -> str:
        return "\n".join(sorted(self.examples.values())[:20])


def token_accepted(headers: dict[str, str]) -> Callable[..., bool | None]:
    """A schemathesis check: a request that carried the caller's valid token is never answered 401.

    (Negative cases may drop or replace the Authorization header; those 401s are right and not counted.)
    """

    def token_accepted(ctx: Any, response: Response, case: Any) -> bool | None:
        sent = response.request.headers.get("Authorization")
        if response.status_code == 401 and sent == headers["Authorization"]:
            raise AssertionError("401 for a request with a token Kubernetes accepts")
        return None

    return token_accepted


def _seed(
    api: TestClient, control_plane: ControlPlane, namespace: str, headers: dict[str, str], ledger: SecretLedger
) -> None:
    """``fuzz`` (inline password) and ``fuzz-ref`` (``password_secret_ref`` to a Secret the caller may read)."""
    params = {"namespace": namespace}
    assert api.post("/api/v1/connectors/fuzz", params=params, json=SEED_BODY, headers=headers).status_code == 201
    ledger.learn(PASSWORD)
    literals = [f"--from-literal={k}={v}" for k, v in REF_SECRET_VALUES.items()]
    control_plane.kubectl("create", "secret", "generic", REF_SECRET, *literals, "-n", namespace)
    control_plane.kubectl(
        "create", "role", "fuzz-secret-reader", "--verb=get", "--resource=secrets",
        f"--resource-name={REF_SECRET}", "-n", namespace,
    )  # fmt: skip
    control_plane.kubectl("label", "secret", REF_SECRET, "sluice.dev/usable-by-connectors=true", "-n", namespace)
    control_plane.kubectl(
        "create", "rolebinding", "fuzz-secret-reader", "--role=fuzz-secret-reader",
        f"--serviceaccount={namespace}:fuzzer", "-n", namespace,
    )  # fmt: skip
    body = json.loads(json.dumps(SEED_BODY))
    connection = body["source"]["postgres"]["connection"]
    del connection["password"]
    connection["password_secret_ref"] = {"name": REF_SECRET, "key": "password"}
    r = api.post("/api/v1/connectors/fuzz-ref", params=params, json=body, headers=headers)
    assert r.status_code == 201, r.text
    ledger.learn_secrets(control_plane, namespace)
    ledger.learn(headers["Authorization"].removeprefix("Bearer "))


@pytest.fixture
def fuzzer(api_user: Callable[..., dict[str, str]]) -> dict[str, str]:
    return api_user("fuzzer")


def test_fuzz_from_openapi_has_no_server_errors_and_returns_no_secrets(
    api_app: FastAPI, api: TestClient, control_plane: ControlPlane, namespace: str, fuzzer: dict[str, str]
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app)
    ledger = SecretLedger(secret_fields(schema.raw_schema))
    _seed(api, control_plane, namespace, fuzzer, ledger)
    findings = Findings()
    checks = [not_a_server_error, token_accepted(fuzzer), ledger.check()]
    skipped: list[str] = []
    started = time.monotonic()

    def run(operation: Any, mode: GenerationMode, path_parameters: dict[str, str] | None) -> None:
        # Connector bodies are expensive to generate (a large schema of nested one-ofs): half per mode for them.
        max_examples = MAX_EXAMPLES // 2 if operation.body else MAX_EXAMPLES
        strategy = operation.as_strategy(
            generation_mode=mode, query={"namespace": namespace}, headers=fuzzer, path_parameters=path_parameters
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
            ledger.learn_body(case.body)
            findings.validate(case, case.call(), checks)

        try:
            check()
        except Unsatisfiable:
            # Nothing to vary in this mode (e.g. no parameter that a negative case could break).
            skipped.append(f"{operation.method.upper()} {operation.path} {mode.value}")

    # Deletes last: the seed connectors are the targets of every other operation on {id}.
    operations = sorted(all_operations(schema), key=lambda op: op.method.lower() == "delete")
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(operation, mode, None)
            replaces_whole_body = operation.method.lower() == "post" and operation.path == "/api/v1/connectors/{id}"
            if "{id}" in operation.path and not replaces_whole_body:
                for cid in ("fuzz", "fuzz-ref"):
                    run(operation, mode, {"id": cid})
    ledger.learn_secrets(control_plane, namespace)
    late = ledger.leaks_in_recorded()
    print(
        f"fuzz: {len(operations)} operations, {findings.calls} requests in {time.monotonic() - started:.0f}s; "
        f"{len(ledger.values)} secret values watched; statuses {sorted(findings.statuses.items())}; "
        f"nothing to vary for: {skipped}"
    )
    assert findings.calls > 200, f"the fuzzer made only {findings.calls} requests"
    assert not findings.examples, findings.report()
    assert not late, "\n".join(late[:20])


def stateful_document(app: FastAPI) -> dict[str, Any]:
    """The served document, narrowed so that sequences get somewhere.

    Source and sink offer only the kinds this version runs: the others are refused with 422 (the per-operation
    run covers that), and with them in, six of seven generated creates would be refused and no link followed.
    The command's response keeps no links, so sequences start with a create rather than with a command on a
    random id (a 404 that leads nowhere); commands are still reached through the links of a create.
    """
    doc = copy.deepcopy(app.openapi())
    schemas = doc["components"]["schemas"]
    parts: tuple[kinds.Part, kinds.Part] = ("source", "sink")
    for part in parts:
        node = schemas[part.capitalize()]
        keep = kinds.available(part)
        node["oneOf"] = [one for one in node["oneOf"] if one["required"][0] in keep]
        node["properties"] = {kind: value for kind, value in node["properties"].items() if kind in keep}
    for response in doc["paths"]["/api/v1/connector/command/{id}"]["post"]["responses"].values():
        response.pop("links", None)
    return doc


def test_stateful_fuzz_along_links_has_no_server_errors_and_returns_no_secrets(
    api_app: FastAPI, api: TestClient, control_plane: ControlPlane, namespace: str, fuzzer: dict[str, str]
) -> None:
    config = SchemathesisConfig.from_dict(
        # Only the document's own links: schemathesis would otherwise add links it infers.
        {"phases": {"stateful": {"inference": {"algorithms": []}}}}
    )
    schema = schemathesis.openapi.from_dict(stateful_document(api_app), config=config)
    schema.app = api_app
    ledger = SecretLedger(secret_fields(schema.raw_schema))
    _seed(api, control_plane, namespace, fuzzer, ledger)
    findings = Findings()
    checks = [not_a_server_error, token_accepted(fuzzer), ledger.check()]
    followed: Counter[str] = Counter()
    scenarios: list[list[str]] = []

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            scenarios.append([])

        def step(self, input: StepInput) -> StepOutput:
            case = input.case
            case.query = {**(case.query or {}), "namespace": namespace}
            case.headers = CaseInsensitiveDict({**dict(case.headers or {}), **fuzzer})
            ledger.learn_body(case.body)
            output: StepOutput = super().step(input)
            status = output.response.status_code
            # Transition ids read "<source> -> [<status>] <link> -> <target>".
            link = input.transition.id.split(" -> ")[1].split("] ", 1)[1] if input.transition else "-"
            link = link if input.is_applied else f"{link}(unused)"
            followed[f"{link} {status}"] += 1
            scenarios[-1].append(f"{case.method} {case.path} {status}")
            return output

        def validate_response(self, response: Response, case: Any, **kwargs: Any) -> None:
            findings.validate(case, response, checks, recorder=self.recorder)

    started = time.monotonic()
    restarts = 0
    while len(scenarios) < STATEFUL_SCENARIOS and time.monotonic() - started < STATEFUL_SECONDS:
        try:
            Workflow.run(
                settings=settings(
                    max_examples=STATEFUL_SCENARIOS - len(scenarios),
                    stateful_step_count=STATEFUL_STEPS,
                    deadline=None,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
            )
        except (Flaky, Unsatisfiable):
            # Which rules can run depends on what the server answered (a bundle fills only on a 201), so
            # Hypothesis sees its own choices change between scenarios and gives up; schemathesis's runner
            # restarts the run then, and so does this test.
            restarts += 1
    elapsed = time.monotonic() - started
    ledger.learn_secrets(control_plane, namespace)
    late = ledger.leaks_in_recorded()
    chained = [s for s in scenarios if len(s) > 1]
    operations = {f"{s.split()[0]} {s.split()[1]}" for scenario in scenarios for s in scenario}
    print(
        f"stateful fuzz: {len(scenarios)} sequences ({len(chained)} of 2+ calls), {findings.calls} requests, "
        f"{len(operations)} operations, in {elapsed:.0f}s ({restarts} restarts); "
        f"{len(ledger.values)} secret values watched; "
        f"links followed (link status: count) {sorted(followed.items())}; statuses {sorted(findings.statuses.items())}"
    )
    for scenario in chained[:5]:
        print("  sequence: " + " → ".join(scenario))
    assert not findings.examples, findings.report()
    assert not late, "\n".join(late[:20])
    # The links were followed to a connector that exists: each of these answered 2xx at least once, and a patch
    # reached one (most generated merge patches make the connector invalid: 422).
    for link in ("GetConnector", "CommandConnector", "DeleteConnector"):
        assert any(k.startswith(f"{link} 2") for k in followed), f"{link} never succeeded: {sorted(followed)}"
    patched = [k for k in followed if k.startswith("PatchConnector ") and not k.endswith((" 404", " 403"))]
    assert patched, f"no patch reached a connector: {sorted(followed)}"


@pytest.mark.parametrize("caller", ["no credentials", "invalid token", "no RBAC"])
def test_fuzz_without_rights_is_refused_with_json(
    api_app: FastAPI, api_user: Callable[..., dict[str, str]], namespace: str, caller: str
) -> None:
    callers: dict[str, Callable[[], dict[str, str]]] = {
        "no credentials": lambda: {},
        "invalid token": lambda: {"Authorization": "Bearer not-a-kubernetes-token"},
        "no RBAC": lambda: api_user("outsider", None),
    }
    headers = callers[caller]()
    expected = {401} if caller != "no RBAC" else {403}
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app)
    statuses: Counter[str] = Counter()
    wrong: dict[str, str] = {}
    operations = [op for op in all_operations(schema) if op.path not in PUBLIC_PATHS]

    def answers(case: Any) -> Iterator[str]:
        """What is wrong with the answer to ``case`` (nothing when it is a JSON 401/403)."""
        response = case.call()
        statuses[f"{case.method} {response.status_code}"] += 1
        sent = response.request.headers.get("authorization")
        assert sent == headers.get("Authorization"), f"sent Authorization {sent!r}"
        if response.status_code not in expected:
            yield f"{case.method} {case.path} -> {response.status_code} (expected {sorted(expected)})"
            return
        try:
            body = json.loads(response.content)
        except ValueError:
            yield f"{case.method} {case.path} -> {response.status_code} without a JSON body"
            return
        if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body.get("message")):
            yield f"{case.method} {case.path} -> {response.status_code} body is not an error: {body!r:.200}"

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, query={"namespace": namespace})

            @given(case=strategy)
            @settings(
                max_examples=UNAUTHORIZED_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                sent = {k: v for k, v in dict(case.headers or {}).items() if k.lower() != "authorization"}
                case.headers = CaseInsensitiveDict({**sent, **headers})
                for problem in answers(case):
                    wrong.setdefault(problem.split(" (")[0], f"{problem}: {case.formatted_path} {case.query}")

            with contextlib.suppress(Unsatisfiable):  # nothing to vary in this mode
                check()
    calls = sum(statuses.values())
    print(f"fuzz without rights ({caller}): {len(operations)} operations, {calls} requests; {sorted(statuses.items())}")
    assert calls > 60, f"only {calls} requests"
    assert not wrong, "\n".join(sorted(wrong.values())[:20])
