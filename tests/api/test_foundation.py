"""The API's foundation through real HTTP: the OpenAPI document, the docs page, the one error
shape for bad input, and idempotent value-moving requests.

A small transfer endpoint built here from the same parts every Omnicard endpoint uses
(Blueprint, marshmallow schema, ``idempotent``, the ledger service) stands in for the domain
endpoints, which have their own tests.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import marshmallow as ma
import pytest
from flask.views import MethodView
from sqlalchemy import func, select

from app import create_app
from app.core.api import Blueprint
from app.core.db import database, session
from app.core.idempotency import IdempotencyKeyMissing, IdempotencyKeyReused, idempotent
from app.ledger import services as ledger
from app.ledger.errors import InsufficientFunds
from app.ledger.models import LedgerTransaction
from app.ledger.rules import Leg
from tests.conftest import TEST_CONFIG
from tests.snapshot import snapshot

blp = Blueprint("probe", __name__, url_prefix="/v1/probe")


class ProbeTransferSchema(ma.Schema):
    from_account_id = ma.fields.Integer(required=True, strict=True)
    to_account_id = ma.fields.Integer(required=True, strict=True)
    amount = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=1))


class ProbeResultSchema(ma.Schema):
    transaction_id = ma.fields.Integer()
    balance = ma.fields.Integer()


@blp.route("/transfers")
class Transfers(MethodView):
    @idempotent(lambda: "probe:1")
    @blp.arguments(ProbeTransferSchema)
    @blp.response(201, ProbeResultSchema)
    @blp.errors(InsufficientFunds, IdempotencyKeyMissing, IdempotencyKeyReused)
    def post(self, data):
        """Move money between two ledger accounts."""
        posted = ledger.post(
            session(),
            kind="transfer",
            legs=[
                Leg(data["from_account_id"], -data["amount"], "USD"),
                Leg(data["to_account_id"], data["amount"], "USD"),
            ],
        )
        return {
            "transaction_id": posted.transaction_id,
            "balance": posted.balances[data["from_account_id"]],
        }


@pytest.fixture(scope="module")
def probe_app(app, database_url):
    probe = create_app(TEST_CONFIG | {"DATABASE_URL": database_url})
    probe.extensions["omnicard.api"].register_blueprint(blp)
    yield probe
    database(probe).engine.dispose()


@pytest.fixture
def accounts(probe_app, committed):
    with database(probe_app).sessions() as s:
        funding = ledger.open_account(s, code="t:fund", name="F", unit="USD", type="equity")
        payer = ledger.open_account(
            s, code="t:payer", name="P", unit="USD", type="liability", no_negative=True
        )
        payee = ledger.open_account(s, code="t:payee", name="Q", unit="USD", type="liability")
        ledger.post(
            s, kind="top_up", legs=[Leg(funding.id, -1_000, "USD"), Leg(payer.id, 1_000, "USD")]
        )
        s.commit()
        return payer.id, payee.id


def count_transfers(probe_app) -> int:
    with database(probe_app).sessions() as s:
        return s.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "transfer")
        )


def transfer(client, body, key="k-1", **kwargs):
    """A transfer through the probe; a refused one must leave every row as it was (its key
    unclaimed, no balance moved)."""
    headers = {"Idempotency-Key": key} if key else {}
    before = rows(client.application)
    response = client.post("/v1/probe/transfers", json=body, headers=headers, **kwargs)
    if 400 <= response.status_code < 500:
        assert rows(client.application) == before, response.json
    return response


def rows(probe_app) -> dict:
    with database(probe_app).sessions() as s:
        return snapshot(s)


def test_openapi_document_and_docs_page_are_served(client):
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json["info"]["title"] == "Omnicard API"
    assert "/v1/health" in spec.json["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.data
    with client.get("/docs/static/swagger-ui-bundle.js") as script:
        assert script.status_code == 200
        assert script.mimetype == "text/javascript"


def test_documented_error_codes_appear_in_the_openapi_document(probe_app):
    spec = probe_app.test_client().get("/openapi.json").json
    responses = spec["paths"]["/v1/probe/transfers"]["post"]["responses"]
    assert "`insufficient_funds`" in responses["409"]["description"]
    assert "`idempotency_key_reused`" in responses["409"]["description"]
    assert "`idempotency_key_missing`" in responses["400"]["description"]


def test_unknown_route_answers_the_error_shape(client):
    response = client.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"
    assert set(response.json["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"from_account_id": 1, "to_account_id": 2, "amount": "12"}, 422, "validation_error"),
        ({"from_account_id": 1, "to_account_id": 2, "amount": 12.5}, 422, "validation_error"),
        ({"from_account_id": 1, "to_account_id": 2, "amount": -5}, 422, "validation_error"),
        (
            {"from_account_id": 1, "to_account_id": 2, "amount": 5, "extra": 1},
            422,
            "validation_error",
        ),
        ({"from_account_id": 1, "to_account_id": 2}, 422, "validation_error"),
    ],
)
def test_bad_fields_answer_422_in_the_error_shape_and_move_nothing(
    probe_app, accounts, body, status, code
):
    response = transfer(probe_app.test_client(), body)
    assert response.status_code == status
    assert response.json["error"]["code"] == code
    assert response.json["error"]["details"]["fields"]
    assert count_transfers(probe_app) == 0


def test_malformed_json_answers_400_malformed_json(probe_app, accounts):
    before = rows(probe_app)
    response = probe_app.test_client().post(
        "/v1/probe/transfers",
        data='{"amount": 5,',
        headers={"Idempotency-Key": "k-1", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_json"
    assert rows(probe_app) == before


def test_missing_idempotency_key_is_refused(probe_app, accounts):
    payer, payee = accounts
    response = transfer(
        probe_app.test_client(),
        {"from_account_id": payer, "to_account_id": payee, "amount": 5},
        key=None,
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "idempotency_key_missing"
    assert count_transfers(probe_app) == 0


def test_replay_returns_the_first_answer_and_moves_money_once(probe_app, accounts):
    payer, payee = accounts
    client = probe_app.test_client()
    body = {"from_account_id": payer, "to_account_id": payee, "amount": 300}
    first = transfer(client, body)
    again = transfer(client, body)
    assert first.status_code == again.status_code == 201
    assert (
        again.json == first.json == {"transaction_id": first.json["transaction_id"], "balance": 700}
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count_transfers(probe_app) == 1


def test_same_key_with_another_body_is_a_conflict(probe_app, accounts):
    payer, payee = accounts
    client = probe_app.test_client()
    transfer(client, {"from_account_id": payer, "to_account_id": payee, "amount": 300})
    response = transfer(client, {"from_account_id": payer, "to_account_id": payee, "amount": 301})
    assert response.status_code == 409
    assert response.json["error"]["code"] == "idempotency_key_reused"
    assert count_transfers(probe_app) == 1


def test_refused_request_keeps_its_key_free_for_a_corrected_retry(probe_app, accounts):
    payer, payee = accounts
    client = probe_app.test_client()
    refused = transfer(client, {"from_account_id": payer, "to_account_id": payee, "amount": 5_000})
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "insufficient_funds"
    retried = transfer(client, {"from_account_id": payer, "to_account_id": payee, "amount": 500})
    assert retried.status_code == 201
    assert count_transfers(probe_app) == 1


def test_eight_concurrent_requests_with_one_key_move_money_once(probe_app, accounts):
    payer, payee = accounts
    body = {"from_account_id": payer, "to_account_id": payee, "amount": 250}
    start = threading.Barrier(8)

    def send(_):
        client = probe_app.test_client()
        start.wait()
        response = transfer(client, body, key="same-key")
        return response.status_code, response.json

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))

    assert {status for status, _ in answers} == {201}
    assert all(payload == answers[0][1] for _, payload in answers)
    assert answers[0][1]["balance"] == 750
    assert count_transfers(probe_app) == 1
