"""Generated requests to every operation of /openapi.json, as each kind of caller: none is
answered with a 5xx, and every answer is one the document gives for that operation: a status
it lists, its content type, a body that matches its schema.

schemathesis generates valid and invalid requests from the document itself (an
Idempotency-Key where one is required, from its pattern); about half the time Hypothesis swaps
in real ids and SKUs, so that the data reaches the code past the look-ups, not only their 404s.
The requests go through the app in this process onto the real database, inside the test's
transaction, and the ledger is verified after each caller's run (the ``db`` fixture). The run
is derandomised, so CI repeats it exactly, and bounded to about a minute per database.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.test_access import PRICE, ring_up

CALLERS = ("shopper", "cashier", "pos", "kiosk", "admin")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ENDS_THE_SESSION = ("/v1/auth/logout", "/v1/pos/shifts/{shift_id}/close")
#: Generated requests per operation, caller and mode: valid data, then invalid.
EXAMPLES = 12
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@pytest.fixture(params=CALLERS)
def caller(request, app, db, world) -> dict:
    """The caller's token, and real ids (by the name of the field or path parameter that takes
    them) for the fuzzer to use."""
    store, device, cashier = world.till()
    _, pos_secret = world.device(store, "pos")
    _, kiosk_secret = world.device(store, "kiosk")
    shopper, me = world.shopper()
    card_id = me["cards"][0]["id"]
    top_up = world.load(card_id, 5_000, cashier)
    product = world.product(price=PRICE)
    sale = ring_up(world.api, cashier, product.sku).json
    shift = world.api.post(
        "/v1/pos/shifts", token=cashier, json={"float": {"amount": 10_000, "currency": "USD"}}
    )
    assert shift.status_code == 201, shift.json
    admin = world.admin_token()
    hook = world.api.post(
        "/v1/admin/webhooks",
        token=admin,
        json={"url": "https://example.test/hook", "event_types": ["sale.completed"]},
        key=None,
    )
    assert hook.status_code == 201, hook.json
    tokens = {
        "shopper": shopper,
        "cashier": cashier,
        "pos": pos_secret,
        "kiosk": kiosk_secret,
        "admin": admin,
    }
    return {
        "token": tokens[request.param],
        "real": {
            "card_id": card_id,
            "to_card_id": card_id,
            "top_up_id": top_up["id"],
            "sale_id": sale["id"],
            "product_id": product.id,
            "device_id": device.id,
            "store_id": store.id,
            "webhook_id": hook.json["id"],
            "sku": product.sku,
            "shift_id": shift.json["id"],
            "receipt_id": sale["receipt"]["id"],
        },
    }


def fuzzed_schema(app, client):
    """The app's OpenAPI document, less its catch-all ``default`` answer: every status an
    operation gives must be one it lists."""
    document = client.get("/openapi.json").json
    for operations in document["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation["responses"].pop("default", None)
    schema = schemathesis.openapi.from_dict(document)
    schema.app = app
    return schema


def with_real_ids(value, real: dict, draw):
    """``value`` with some of its fields named in ``real`` set to the real thing."""
    if isinstance(value, list):
        return [with_real_ids(item, real, draw) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        name: real[name]
        if name in real and draw(st.booleans(), label=f"real {name}")
        else with_real_ids(item, real, draw)
        for name, item in value.items()
    }


def test_every_operation_answers_as_documented_and_never_5xx(app, client, caller):
    schema = fuzzed_schema(app, client)
    headers = {"Authorization": f"Bearer {caller['token']}"}
    findings: list[str] = []

    def send(case, data) -> None:
        if case.path_parameters:
            case.path_parameters = with_real_ids(case.path_parameters, caller["real"], data.draw)
        if isinstance(case.body, dict | list):
            case.body = with_real_ids(case.body, caller["real"], data.draw)
        try:
            case.validate_response(case.call(headers=headers), checks=CHECKS)
        except (Exception, FailureGroup) as error:  # all are gathered, then reported together
            curl = case.as_curl_command(headers=headers)
            findings.append(f"{case.method} {case.path}: {error!s:.1500}\n    {curl:.1500}")

    operations = [result.ok() for result in schema.get_all_operations()]
    # Logging out and closing the shift end the caller's token: last.
    operations.sort(key=lambda operation: operation.path in ENDS_THE_SESSION)
    for operation in operations:
        for mode in MODES:
            run = given(case=operation.as_strategy(generation_mode=mode), data=st.data())(send)
            run = settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )(run)
            try:
                run()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing in it can be made invalid
    assert not findings, f"{len(findings)} findings:\n" + "\n".join(findings)
