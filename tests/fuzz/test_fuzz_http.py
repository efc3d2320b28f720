"""Every operation of ``/openapi.json`` fuzzed against a served service, with and without the token.

Schemathesis generates the requests from the document the service serves (so a route another
change adds is fuzzed without touching this file): schema-valid ones and ones that break the
schema (wrong types, missing fields, values out of range). Every answer must be no 500, a
status the operation declares, with the declared content type and a body matching its schema; a
request the schema calls invalid must be refused with a 4xx; an operation that needs the token
must refuse a request without it; nothing the service logs may carry a traceback; and every
query parameter a handler reads (recorded as it runs) must be one the document declares.

The service is a throwaway: its state is under pytest's tmp dir, its MCP endpoint a simulator on
loopback, so the mutating routes (import, settings, swarm control) are fuzzed too. Example
counts are small and generation is derandomized (seeded from each test's name): the same
requests on every run, a few seconds per operation on a busy machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks as openapi_checks
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, Route
from support.served import TOKEN, Served, examples, served

from visionflow.web.openapi import ApiRoute

pytestmark = pytest.mark.slow

#: Examples per operation, generation mode and token (22 operations today: ~1250 requests).
EXAMPLES = examples(25)


@schemathesis.check
def no_server_fault(ctx: schemathesis.CheckContext, response: Any, case: schemathesis.Case) -> bool:
    """No 500, ever. A 502 (the MCP server refused the call) for a schema-valid request means our
    schema takes what the server does not: a finding too. A declared 503 (busy, starting, the
    endpoint down) is an answer, as the other checks hold it to its declaration."""
    status = response.status_code
    if status == 500:
        raise AssertionError(f"500 Internal Server Error: {response.text[:500]}")
    meta = case.meta
    if status == 502 and meta is not None and not meta.generation.mode.is_negative:
        raise AssertionError(f"a schema-valid request refused by the MCP server: {response.text}")
    return True


CHECKS = [
    no_server_fault,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
    openapi_checks.ignored_auth,
]


class _Recorded(QueryParams):
    """Query parameters that note each name a handler asks for."""

    seen: set[str]

    def get(self, key: Any, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> str:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self.seen.add(key)
        return super().__contains__(key)

    def getlist(self, key: Any) -> list[str]:
        self.seen.add(key)
        return super().getlist(key)


@pytest.fixture(scope="module")
def query_reads() -> Iterator[dict[int, tuple[BaseRoute, set[str]]]]:
    """Which query parameters each route's handler read while it was fuzzed (the service runs
    in this process): every one must be declared, so the fuzzer generates it too."""
    reads: dict[int, tuple[BaseRoute, set[str]]] = {}  # by id(): a Route is not hashable
    original = HTTPConnection.query_params

    def recording(self: HTTPConnection) -> QueryParams:
        params = _Recorded(original.fget(self))  # type: ignore[attr-defined]
        route = self.scope.get("route")
        params.seen = reads.setdefault(id(route), (route, set()))[1]
        return params

    HTTPConnection.query_params = property(recording)  # type: ignore[method-assign,assignment]
    try:
        yield reads
    finally:
        HTTPConnection.query_params = original  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, query_reads: dict[int, tuple[BaseRoute, set[str]]]
) -> Iterator[Served]:
    # no rate limit: the fuzzer sends hundreds of mutating requests a second on purpose
    with served(tmp_path_factory.mktemp("fuzz-http"), token=TOKEN, rate_limit=0) as s:
        yield s


def load(spec: dict[str, Any]) -> Any:
    """The document as schemathesis fuzzes it. The token is this test's to send or not (the
    ``headers`` of each call): a negative case that "breaks" the security requirement by leaving
    it out would get it added back, and an accepted request would look like a missed refusal."""
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.generation.update(with_security_parameters=False)
    return schema


def fuzz(
    op: Any, mode: GenerationMode, headers: dict[str, str], base: str, session: requests.Session
) -> Callable[[], None]:
    checks = list(CHECKS)
    if not op.body:
        # parameters alone: the schema says all that is valid, so a valid request gets no 400
        # (a body's schema cannot say everything: a graph's edges must name its nodes)
        checks.append(openapi_checks.positive_data_acceptance)

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # shrinking a failure would resend hundreds of requests: the first one is reported
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base, session=session, headers=headers, timeout=30)
        case.validate_response(response, checks=checks, headers=headers)

    return run


# ~20 s each on an idle machine; a busy one may take several times that (a long run,
# VISIONFLOW_FUZZ_SCALE=20, wants --timeout=0)
@pytest.mark.timeout(600)
@pytest.mark.parametrize("token", [True, False], ids=["with-token", "without-token"])
def test_every_operation_answers_as_documented(
    service: Served, token: bool, query_reads: dict[int, tuple[BaseRoute, set[str]]]
) -> None:
    schema = load(requests.get(f"{service.url}/openapi.json", timeout=30).json())
    headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    failures: list[str] = []
    fuzzed = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path == "/wss":
            continue  # the upgrade is fuzzed by test_fuzz_ws.py; plain HTTP there is a 426
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                with requests.Session() as session:
                    fuzz(op, mode, headers, service.url, session)()
            except Unsatisfiable:  # nothing to break: no parameter, or one any string fits
                continue
            except (Exception, BaseExceptionGroup) as exc:  # each operation's, not the first
                failures.append(f"{op.label} ({mode.value}): {describe(exc)}")
            fuzzed += 1
    assert fuzzed >= 20, "the document lists fewer operations than the service has"
    assert not failures, "\n\n".join(failures)
    assert not service.tracebacks(), "\n".join(service.tracebacks())
    undeclared = {
        route.path: sorted(names - declared_query(route))
        for route, names in query_reads.values()
        if isinstance(route, Route) and names - declared_query(route)
    }
    assert not undeclared, f"query parameters read but not in /openapi.json: {undeclared}"


def describe(exc: BaseException) -> str:
    """The failure and what it holds: a flaky one's first failure is in its group."""
    text = str(exc)
    if isinstance(exc, BaseExceptionGroup):
        text += "".join(f"\n  - {describe(sub)}" for sub in exc.exceptions)
    return text


def declared_query(route: Route) -> set[str]:
    parameters = route.parameters if isinstance(route, ApiRoute) else []
    return {p["name"] for p in parameters if p["in"] == "query"}
