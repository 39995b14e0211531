"""schemathesis over ``/openapi.json`` against the live app: for every operation, requests
generated from the schema (valid ones, and invalid ones) never get a 5xx.

Bounded: a few examples per operation and mode. The two Server-Sent Events streams are left
out (one of them never ends by design); ``tests/test_http_api.py`` covers them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.test_http_harness import AUTH, Live, live_pixpipe

with warnings.catch_warnings():  # imported here so that its own import-time warnings stay quiet
    warnings.simplefilter("ignore", DeprecationWarning)
    import schemathesis
    from schemathesis import GenerationMode

pytestmark = [pytest.mark.timeout(600), pytest.mark.xdist_group("http-schema")]
EXAMPLES = 12
STREAMS = ("/v1/events", "/v1/images/{key}/events")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_pixpipe(tmp_path_factory) as pixpipe:
        yield pixpipe


def operations(live: Live) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if op.path not in STREAMS]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(live: Live, mode: GenerationMode) -> None:
    ops = operations(live)
    assert len(ops) >= 12, [op.label for op in ops]
    errors: list[str] = []
    for op in ops:

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def call(case: Any) -> None:
            response = case.call(base_url=live.url, headers=AUTH, timeout=30)
            if response.status_code >= 500:
                errors.append(f"{case.method} {response.request.url} -> "
                              f"{response.status_code} {response.text[:200]}")  # fmt: skip

        try:
            call()
        except Unsatisfiable:  # nothing to get wrong (no parameters, no body): no negative case
            assert mode is GenerationMode.NEGATIVE, op.label
    assert not errors, "\n".join(errors)
