"""Top-ups through real HTTP: a shopper's bank card through the sandbox payment gateway, cash
or a bank card at the till, and auto-reload after a sale; each on SQLite and PostgreSQL.

The sandbox gateway: ``tok_visa`` approves, ``tok_chargeDeclined`` declines, ``tok_timeout``
times out after the processor has in fact charged (asking again finds the charge approved),
and any other token is declined as ``invalid_payment_token``.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from app.cards.models import Card
from app.core.db import database
from app.ledger import services as ledger
from app.ledger.models import LedgerTransaction, Posting
from app.ledger.verify import verify
from app.payments.models import TopUp

MINIMUM, MAXIMUM, CARD_MAXIMUM = 500, 25_000, 50_000


def usd(amount):
    return {"amount": amount, "currency": "USD"}


# -- helpers: what a client sends, and what the database holds afterwards --------------------


def top_up(api, token, card_id, amount=2_000, payment_token="tok_visa", **kw):
    return api.post(
        f"/v1/cards/{card_id}/top-ups",
        token=token,
        json={"amount": usd(amount), "payment_token": payment_token},
        **kw,
    )


def till_top_up(api, cashier, card_id, amount=2_000, tender="cash", **kw):
    return api.post(
        f"/v1/cards/{card_id}/top-ups",
        token=cashier,
        json={"amount": usd(amount), "tender": tender},
        **kw,
    )


def card_balance(api, token, card_id) -> int:
    response = api.get(f"/v1/cards/{card_id}", token=token)
    assert response.status_code == 200, response.json
    return response.json["balance"]["amount"]


def error_code(response) -> str:
    return response.json["error"]["code"]


def card_account(db, card_id) -> int:
    return db.scalar(select(Card.account_id).where(Card.id == card_id))


def card_number(db, card_id) -> str:
    """The full number, which the API never shows (only last4): what a physical card carries."""
    return db.scalar(select(Card.number).where(Card.id == card_id))


def top_ups_of(db, card_id) -> list[TopUp]:
    return list(
        db.scalars(
            select(TopUp)
            .where(TopUp.card_id == card_id)
            .order_by(TopUp.id)
            .execution_options(populate_existing=True)
        )
    )


def postings_on(db, account_id) -> int:
    return db.scalar(
        select(func.count()).select_from(Posting).where(Posting.account_id == account_id)
    )


def legs_of(db, transaction_id) -> dict[int, int]:
    rows = db.execute(
        select(Posting.account_id, Posting.amount).where(Posting.transaction_id == transaction_id)
    )
    return {row.account_id: row.amount for row in rows}


def settle_pending(app, *args):
    result = app.test_cli_runner().invoke(args=["payments", "settle", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(autouse=True)
def limits(app, monkeypatch):
    """The limits these tests count on, whatever the environment sets."""
    for name, value in {
        "TOPUP_MIN_MINOR": MINIMUM,
        "TOPUP_MAX_MINOR": MAXIMUM,
        "CARD_MAX_BALANCE_MINOR": CARD_MAXIMUM,
        "CURRENCY": "USD",
        "PAYMENT_GATEWAY": "sandbox",
    }.items():
        monkeypatch.setitem(app.config, name, value)


@pytest.fixture
def shopper(world):
    """A signed-up shopper and their digital card: (token, card id)."""
    token, me = world.shopper()
    return token, me["cards"][0]["id"]


@pytest.fixture
def till(world):
    """A store, its POS terminal and a signed-in cashier: (store, device, cashier token)."""
    return world.till()


# -- a shopper's bank card through the gateway -----------------------------------------------


def test_approved_top_up_answers_201_and_credits_exactly_the_amount(api, shopper):
    token, card_id = shopper
    response = top_up(api, token, card_id, 2_000)
    assert response.status_code == 201, response.json
    assert response.json["status"] == "succeeded"
    assert response.json["source"] == "gateway"
    assert response.json["amount"] == usd(2_000)
    assert response.json["card_balance"] == usd(2_000)
    assert card_balance(api, token, card_id) == 2_000


def test_approved_top_up_is_one_ledger_transaction_from_gateway_clearing_to_the_card(
    api, db, shopper
):
    token, card_id = shopper
    response = top_up(api, token, card_id, 2_000)
    assert response.status_code == 201, response.json
    (row,) = top_ups_of(db, card_id)
    clearing = ledger.account_by_code(db, "clearing:gateway")
    account = card_account(db, card_id)
    assert legs_of(db, row.ledger_transaction_id) == {clearing.id: -2_000, account: 2_000}
    assert db.get(LedgerTransaction, row.ledger_transaction_id).kind == "top_up"
    assert postings_on(db, account) == 1


def test_top_up_earns_no_stars(api, shopper):
    token, card_id = shopper
    assert top_up(api, token, card_id, 10_000).status_code == 201
    me = api.get("/v1/me", token=token)
    assert me.status_code == 200
    assert me.json["stars"] == 0


def test_top_ups_at_the_smallest_and_largest_amounts_are_accepted(api, shopper):
    token, card_id = shopper
    assert top_up(api, token, card_id, MINIMUM).status_code == 201
    assert top_up(api, token, card_id, MAXIMUM).status_code == 201
    assert card_balance(api, token, card_id) == MINIMUM + MAXIMUM


def test_top_up_that_fills_the_card_exactly_to_its_maximum_is_accepted(api, world, shopper, till):
    token, card_id = shopper
    _, _, cashier = till
    world.load(card_id, 25_000, cashier)
    world.load(card_id, 20_000, cashier)
    response = top_up(api, token, card_id, CARD_MAXIMUM - 45_000)
    assert response.status_code == 201, response.json
    assert card_balance(api, token, card_id) == CARD_MAXIMUM


def test_declined_card_answers_402_payment_declined_and_moves_nothing(api, db, shopper):
    token, card_id = shopper
    response = top_up(
        api, token, card_id, 2_000, payment_token="tok_chargeDeclined", refusal_writes=True
    )
    assert response.status_code == 402
    assert error_code(response) == "payment_declined"
    assert response.json["error"]["details"]["decline_code"] == "card_declined"
    assert card_balance(api, token, card_id) == 0
    assert [(t.status, t.decline_code) for t in top_ups_of(db, card_id)] == [
        ("declined", "card_declined")
    ]
    assert postings_on(db, card_account(db, card_id)) == 0


def test_retrying_a_declined_top_up_with_the_same_key_answers_the_same_decline(api, db, shopper):
    token, card_id = shopper
    declined = {"payment_token": "tok_chargeDeclined", "key": "k-dec"}
    # The decline is recorded; the retry writes nothing.
    first = top_up(api, token, card_id, 2_000, **declined, refusal_writes=True)
    again = top_up(api, token, card_id, 2_000, **declined)
    assert first.status_code == again.status_code == 402
    assert again.json == first.json
    assert len(top_ups_of(db, card_id)) == 1
    assert card_balance(api, token, card_id) == 0


def test_unknown_payment_token_is_declined_as_invalid_payment_token(api, db, shopper):
    token, card_id = shopper
    response = top_up(api, token, card_id, 2_000, payment_token="tok_madeUp", refusal_writes=True)
    assert response.status_code == 402
    assert error_code(response) == "payment_declined"
    assert response.json["error"]["details"]["decline_code"] == "invalid_payment_token"
    assert card_balance(api, token, card_id) == 0
    assert [(t.status, t.decline_code) for t in top_ups_of(db, card_id)] == [
        ("declined", "invalid_payment_token")
    ]
    assert postings_on(db, card_account(db, card_id)) == 0


def test_shopper_cannot_top_up_another_shoppers_card(api, world, db, shopper):
    _, card_id = shopper
    other_token, _ = world.shopper("Grace")
    response = top_up(api, other_token, card_id, 2_000)
    assert response.status_code == 404
    assert error_code(response) == "card_not_found"
    assert top_ups_of(db, card_id) == []


# -- the gateway times out (after the processor charged) -------------------------------------


def test_timed_out_top_up_answers_202_pending_and_leaves_the_balance_unchanged(api, db, shopper):
    token, card_id = shopper
    response = top_up(api, token, card_id, 2_000, payment_token="tok_timeout")
    assert response.status_code == 202, response.json
    assert response.json["status"] == "pending"
    assert response.json["card_balance"] == usd(0)
    assert card_balance(api, token, card_id) == 0
    assert [t.status for t in top_ups_of(db, card_id)] == ["pending"]


def test_retry_with_the_same_key_settles_a_timed_out_top_up_and_credits_it_once(api, db, shopper):
    token, card_id = shopper
    pending = top_up(api, token, card_id, 2_000, payment_token="tok_timeout", key="k-t")
    assert pending.status_code == 202
    settled = top_up(api, token, card_id, 2_000, payment_token="tok_timeout", key="k-t")
    assert settled.status_code == 201, settled.json
    assert settled.json["id"] == pending.json["id"]
    assert settled.json["status"] == "succeeded"
    assert settled.json["card_balance"] == usd(2_000)
    assert card_balance(api, token, card_id) == 2_000
    assert postings_on(db, card_account(db, card_id)) == 1


def test_retry_after_a_timed_out_top_up_settled_replays_without_crediting_again(api, db, shopper):
    token, card_id = shopper
    for _ in range(2):
        top_up(api, token, card_id, 2_000, payment_token="tok_timeout", key="k-t")
    replay = top_up(api, token, card_id, 2_000, payment_token="tok_timeout", key="k-t")
    assert replay.status_code == 201
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.json["status"] == "succeeded"
    assert card_balance(api, token, card_id) == 2_000
    assert len(top_ups_of(db, card_id)) == 1
    assert postings_on(db, card_account(db, card_id)) == 1


def test_get_top_up_shows_it_pending_then_succeeded(api, shopper):
    token, card_id = shopper
    pending = top_up(api, token, card_id, 2_000, payment_token="tok_timeout", key="k-t")
    path = f"/v1/top-ups/{pending.json['id']}"
    before = api.get(path, token=token)
    assert before.status_code == 200
    assert (before.json["status"], before.json["card_balance"]) == ("pending", usd(0))
    top_up(api, token, card_id, 2_000, payment_token="tok_timeout", key="k-t")
    after = api.get(path, token=token)
    assert after.status_code == 200
    assert (after.json["status"], after.json["card_balance"]) == ("succeeded", usd(2_000))


def test_another_shopper_cannot_see_a_top_up(api, world, shopper):
    token, card_id = shopper
    made = top_up(api, token, card_id, 2_000)
    other_token, _ = world.shopper("Grace")
    response = api.get(f"/v1/top-ups/{made.json['id']}", token=other_token)
    assert response.status_code == 404
    assert error_code(response) == "top_up_not_found"
    missing = api.get("/v1/top-ups/987654321", token=other_token)
    assert (missing.status_code, missing.json) == (404, response.json)


def test_settle_command_credits_a_pending_top_up_once(app, api, db, shopper):
    token, card_id = shopper
    pending = top_up(api, token, card_id, 3_000, payment_token="tok_timeout")
    output = settle_pending(app, "--older-than", "0")
    assert f"top-up {pending.json['id']}: succeeded" in output
    assert card_balance(api, token, card_id) == 3_000
    assert api.get(f"/v1/top-ups/{pending.json['id']}", token=token).json["status"] == "succeeded"
    assert postings_on(db, card_account(db, card_id)) == 1


def test_settle_command_run_twice_credits_once(app, api, db, shopper):
    token, card_id = shopper
    top_up(api, token, card_id, 3_000, payment_token="tok_timeout")
    settle_pending(app, "--older-than", "0")
    output = settle_pending(app, "--older-than", "0")
    assert "0 pending top-up(s) looked at" in output
    assert card_balance(api, token, card_id) == 3_000
    assert postings_on(db, card_account(db, card_id)) == 1


def test_settle_command_leaves_top_ups_younger_than_its_cutoff_pending(app, api, db, shopper):
    token, card_id = shopper
    top_up(api, token, card_id, 3_000, payment_token="tok_timeout")
    output = settle_pending(app, "--older-than", "3600")
    assert "0 pending top-up(s) looked at" in output
    assert [t.status for t in top_ups_of(db, card_id)] == ["pending"]
    assert card_balance(api, token, card_id) == 0


def test_retry_after_the_settle_command_answers_succeeded_without_crediting_again(
    app, api, db, shopper
):
    token, card_id = shopper
    top_up(api, token, card_id, 3_000, payment_token="tok_timeout", key="k-t")
    settle_pending(app, "--older-than", "0")
    retry = top_up(api, token, card_id, 3_000, payment_token="tok_timeout", key="k-t")
    assert retry.status_code == 201, retry.json
    assert retry.json["status"] == "succeeded"
    assert card_balance(api, token, card_id) == 3_000
    assert postings_on(db, card_account(db, card_id)) == 1


def test_pending_top_up_the_card_can_no_longer_take_is_not_loaded(api, world, db, shopper, till):
    token, card_id = shopper
    _, _, cashier = till
    top_up(api, token, card_id, 10_000, payment_token="tok_timeout", key="k-t")
    world.load(card_id, 25_000, cashier)
    world.load(card_id, 20_000, cashier)
    # The pending top-up is settled, as declined.
    retry = top_up(
        api, token, card_id, 10_000, payment_token="tok_timeout", key="k-t", refusal_writes=True
    )
    assert retry.status_code == 409
    assert error_code(retry) == "top_up_not_loaded"
    assert card_balance(api, token, card_id) == 45_000
    assert [(t.source, t.status, t.decline_code) for t in top_ups_of(db, card_id)] == [
        ("gateway", "declined", "balance_limit_exceeded"),
        ("cash", "succeeded", None),
        ("cash", "succeeded", None),
    ]


# -- what is refused, and changes nothing ----------------------------------------------------


def token_body(amount=2_000, currency="USD", **overrides):
    return {
        "amount": {"amount": amount, "currency": currency},
        "payment_token": "tok_visa",
        **overrides,
    }


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param(token_body(MINIMUM - 1), 422, "amount_out_of_range", id="below-minimum"),
        pytest.param(token_body(MAXIMUM + 1), 422, "amount_out_of_range", id="above-maximum"),
        pytest.param(token_body(10**12), 422, "amount_out_of_range", id="largest-money"),
        pytest.param(token_body(0), 422, "validation_error", id="zero"),
        pytest.param(token_body(-2_000), 422, "validation_error", id="negative"),
        pytest.param(token_body(1_250.5), 422, "validation_error", id="fractional"),
        pytest.param(token_body(2_000.0), 422, "validation_error", id="float"),
        pytest.param(token_body("2000"), 422, "validation_error", id="string"),
        pytest.param(token_body(True), 422, "validation_error", id="boolean"),
        pytest.param(token_body(None), 422, "validation_error", id="null"),
        pytest.param(token_body(10**13), 422, "validation_error", id="huge"),
        pytest.param(token_body(2**64), 422, "validation_error", id="beyond-64-bits"),
        pytest.param(
            token_body(currency="EUR"),
            422,
            "currency_mismatch",
            id="wrong-currency",
        ),
        pytest.param(
            token_body(currency="usd"),
            422,
            "validation_error",
            id="lowercase-currency",
        ),
        pytest.param(
            {"amount": {"amount": 2_000}, "payment_token": "tok_visa"},
            422,
            "validation_error",
            id="no-currency",
        ),
        pytest.param({"payment_token": "tok_visa"}, 422, "validation_error", id="no-amount"),
        pytest.param({"amount": usd(2_000)}, 422, "validation_error", id="no-payment-token"),
        pytest.param(token_body(payment_token=""), 422, "validation_error", id="empty-token"),
        pytest.param(token_body(tender="cash"), 422, "validation_error", id="shopper-sends-tender"),
        pytest.param(
            {"amount": usd(2_000), "tender": "cash"},
            422,
            "validation_error",
            id="shopper-sends-only-tender",
        ),
        pytest.param(token_body(tip=100), 422, "validation_error", id="unknown-field"),
    ],
)
def test_invalid_top_up_is_refused_with_a_stable_code_and_changes_nothing(
    api, db, shopper, body, status, code
):
    token, card_id = shopper
    response = api.post(f"/v1/cards/{card_id}/top-ups", token=token, json=body)
    assert response.status_code == status, response.json
    assert error_code(response) == code
    assert card_balance(api, token, card_id) == 0
    assert top_ups_of(db, card_id) == []


def test_top_up_above_the_card_maximum_balance_is_refused(api, world, db, shopper, till):
    token, card_id = shopper
    _, _, cashier = till
    world.load(card_id, 25_000, cashier)
    world.load(card_id, 20_000, cashier)
    response = top_up(api, token, card_id, CARD_MAXIMUM - 45_000 + 1)
    assert response.status_code == 409
    assert error_code(response) == "balance_limit_exceeded"
    assert card_balance(api, token, card_id) == 45_000
    assert [t.source for t in top_ups_of(db, card_id)] == ["cash", "cash"]


def test_top_up_of_a_frozen_card_is_refused(api, db, shopper):
    token, card_id = shopper
    lost = api.post(f"/v1/cards/{card_id}/report-lost", token=token)
    assert lost.status_code == 200, lost.json
    replacement_id = lost.json["replacement_card"]["id"]
    response = top_up(api, token, card_id, 2_000)
    assert response.status_code == 409
    assert error_code(response) == "card_frozen"
    assert top_ups_of(db, card_id) == []
    assert card_balance(api, token, card_id) == 0
    assert card_balance(api, token, replacement_id) == 0


def test_top_up_without_an_idempotency_key_is_refused(api, db, shopper):
    token, card_id = shopper
    response = top_up(api, token, card_id, 2_000, key=None)
    assert response.status_code == 400
    assert error_code(response) == "idempotency_key_missing"
    assert card_balance(api, token, card_id) == 0
    assert top_ups_of(db, card_id) == []


def test_reusing_a_key_for_a_different_top_up_is_refused(api, db, shopper):
    token, card_id = shopper
    assert top_up(api, token, card_id, 2_000, key="k-1").status_code == 201
    response = top_up(api, token, card_id, 3_000, key="k-1")
    assert response.status_code == 409
    assert error_code(response) == "idempotency_key_reused"
    assert card_balance(api, token, card_id) == 2_000
    assert len(top_ups_of(db, card_id)) == 1


def test_approved_top_up_replayed_with_the_same_key_credits_once(api, db, shopper):
    token, card_id = shopper
    first = top_up(api, token, card_id, 2_000, key="k-1")
    again = top_up(api, token, card_id, 2_000, key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json == first.json
    assert card_balance(api, token, card_id) == 2_000
    assert len(top_ups_of(db, card_id)) == 1


def test_malformed_json_is_refused(api, db, shopper):
    token, card_id = shopper
    response = api.post(
        f"/v1/cards/{card_id}/top-ups",
        token=token,
        data='{"amount": {"amount": 2000, "currency": "USD"}, "payment_token": ',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert error_code(response) == "malformed_json"
    assert card_balance(api, token, card_id) == 0
    assert top_ups_of(db, card_id) == []


def test_refused_top_up_frees_its_key_for_a_corrected_retry(api, db, shopper):
    token, card_id = shopper
    refused = top_up(api, token, card_id, MINIMUM - 1, key="k-1")
    assert refused.status_code == 422
    assert error_code(refused) == "amount_out_of_range"
    assert card_balance(api, token, card_id) == 0
    assert top_ups_of(db, card_id) == []
    # The same key, the amount corrected: a new request, not a reuse of the refused one's key.
    corrected = top_up(api, token, card_id, MINIMUM, key="k-1")
    assert corrected.status_code == 201, corrected.json
    replayed = top_up(api, token, card_id, MINIMUM, key="k-1")
    assert replayed.status_code == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json == corrected.json
    assert card_balance(api, token, card_id) == MINIMUM
    assert [row.amount_minor for row in top_ups_of(db, card_id)] == [MINIMUM]


# -- cash or a bank card at the till ---------------------------------------------------------


@pytest.mark.parametrize(
    ("tender", "account"), [("cash", "cash_account_id"), ("bank_card", "bank_card_account_id")]
)
def test_till_top_up_credits_the_card_from_the_stores_account_for_the_tender(
    api, db, shopper, till, tender, account
):
    token, card_id = shopper
    store, _, cashier = till
    response = till_top_up(api, cashier, card_id, 3_000, tender=tender)
    assert response.status_code == 201, response.json
    assert (response.json["status"], response.json["source"]) == ("succeeded", tender)
    assert response.json["card_balance"] == usd(3_000)
    (row,) = top_ups_of(db, card_id)
    source = getattr(store, account)
    assert legs_of(db, row.ledger_transaction_id) == {
        source: -3_000,
        card_account(db, card_id): 3_000,
    }
    assert ledger.balance_of(db, source) == -3_000
    other = store.bank_card_account_id if tender == "cash" else store.cash_account_id
    assert ledger.balance_of(db, other) == 0
    assert card_balance(api, token, card_id) == 3_000


def test_till_top_up_replayed_with_the_same_key_credits_once(api, db, shopper, till):
    token, card_id = shopper
    store, _, cashier = till
    first = till_top_up(api, cashier, card_id, 3_000, key="till-1")
    again = till_top_up(api, cashier, card_id, 3_000, key="till-1")
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert card_balance(api, token, card_id) == 3_000
    assert ledger.balance_of(db, store.cash_account_id) == -3_000


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"amount": usd(3_000)}, id="no-tender"),
        pytest.param({"amount": usd(3_000), "payment_token": "tok_visa"}, id="payment-token"),
        pytest.param(
            {"amount": usd(3_000), "tender": "cash", "payment_token": "tok_visa"},
            id="tender-and-payment-token",
        ),
        pytest.param({"amount": usd(3_000), "tender": "cheque"}, id="unknown-tender"),
    ],
)
def test_till_top_up_without_a_tender_is_refused(api, db, shopper, till, body):
    token, card_id = shopper
    store, _, cashier = till
    response = api.post(f"/v1/cards/{card_id}/top-ups", token=cashier, json=body)
    assert response.status_code == 422, response.json
    assert error_code(response) == "validation_error"
    assert card_balance(api, token, card_id) == 0
    assert ledger.balance_of(db, store.cash_account_id) == 0
    assert top_ups_of(db, card_id) == []


def test_till_top_up_in_another_currency_is_refused(api, db, shopper, till):
    token, card_id = shopper
    store, _, cashier = till
    response = api.post(
        f"/v1/cards/{card_id}/top-ups",
        token=cashier,
        json={"amount": {"amount": 3_000, "currency": "EUR"}, "tender": "cash"},
    )
    assert response.status_code == 422
    assert error_code(response) == "currency_mismatch"
    assert card_balance(api, token, card_id) == 0
    assert ledger.balance_of(db, store.cash_account_id) == 0


def test_till_top_up_outside_the_allowed_amounts_is_refused(api, db, shopper, till):
    token, card_id = shopper
    store, _, cashier = till
    response = till_top_up(api, cashier, card_id, MAXIMUM + 1)
    assert response.status_code == 422
    assert error_code(response) == "amount_out_of_range"
    assert card_balance(api, token, card_id) == 0
    assert ledger.balance_of(db, store.cash_account_id) == 0


def test_till_sells_an_unregistered_gift_card_found_by_its_number_then_loads_it(
    api, world, db, till
):
    store, _, cashier = till
    batch = api.post(
        "/v1/admin/card-batches", token=world.admin_token(), json={"size": 1, "note": "gifts"}
    )
    assert batch.status_code == 201, batch.json
    number = batch.json["cards"][0]["number"]
    found = api.post("/v1/pos/lookups", token=cashier, json={"card_number": number}, key=None)
    assert found.status_code == 200, found.json
    assert (found.json["registered"], found.json["status"]) == (False, "inactive")
    assert found.json["balance"] == usd(0)
    unsold = till_top_up(api, cashier, found.json["id"], 2_500)  # sold first, then loaded
    assert unsold.status_code == 409
    assert unsold.json["error"]["code"] == "card_inactive"

    world.sell_gift_card(number, 1_000, cashier)
    response = till_top_up(api, cashier, found.json["id"], 2_500)
    assert response.status_code == 201, response.json
    assert response.json["card_balance"] == usd(3_500)
    again = api.post("/v1/pos/lookups", token=cashier, json={"card_number": number}, key=None)
    assert again.json["balance"] == usd(3_500)
    assert ledger.balance_of(db, store.cash_account_id) == -3_500


# -- auto-reload after a sale ----------------------------------------------------------------


def set_auto_reload(api, token, card_id, *, threshold, amount, payment_token="tok_visa"):
    response = api.put(
        f"/v1/cards/{card_id}/auto-reload",
        token=token,
        json={"threshold": usd(threshold), "amount": usd(amount), "payment_token": payment_token},
    )
    assert response.status_code == 200, response.json
    return response.json


def sell(api, world, db, cashier, card_id, price):
    """One item of ``price``, paid in full from the card presented by its number."""
    product = world.product(price=price)
    response = api.post(
        "/v1/sales",
        token=cashier,
        json={
            "customer": {"card_number": card_number(db, card_id)},
            "lines": [{"sku": product.sku, "quantity": 1}],
            "tenders": [{"type": "card_balance", "amount": usd(price)}],
        },
    )
    assert response.status_code == 201, response.json
    return response.json


def auto_reloads_of(db, card_id) -> list[TopUp]:
    return [t for t in top_ups_of(db, card_id) if t.channel == "auto"]


def test_sale_that_takes_the_card_below_the_threshold_fires_one_reload_after_it(
    api, world, db, shopper, till
):
    token, card_id = shopper
    _, _, cashier = till
    world.load(card_id, 1_500, cashier)
    set_auto_reload(api, token, card_id, threshold=1_000, amount=2_000)
    sale = sell(api, world, db, cashier, card_id, 600)
    assert sale["card_balance"] == usd(900)
    assert card_balance(api, token, card_id) == 900 + 2_000
    reloads = auto_reloads_of(db, card_id)
    assert [(t.status, t.amount_minor, t.trigger_sale_id) for t in reloads] == [
        ("succeeded", 2_000, sale["id"])
    ]


def test_later_sale_that_stays_below_the_threshold_does_not_fire_again(
    api, world, db, shopper, till
):
    token, card_id = shopper
    _, _, cashier = till
    world.load(card_id, 2_500, cashier)
    set_auto_reload(api, token, card_id, threshold=2_000, amount=MINIMUM)
    sell(api, world, db, cashier, card_id, 1_500)
    assert card_balance(api, token, card_id) == 1_000 + MINIMUM
    later = sell(api, world, db, cashier, card_id, 450)
    assert later["card_balance"] == usd(1_050)
    assert card_balance(api, token, card_id) == 1_050
    assert len(auto_reloads_of(db, card_id)) == 1


def test_sale_that_leaves_the_card_at_the_threshold_does_not_fire(api, world, db, shopper, till):
    token, card_id = shopper
    _, _, cashier = till
    world.load(card_id, 2_500, cashier)
    set_auto_reload(api, token, card_id, threshold=1_000, amount=2_000)
    sale = sell(api, world, db, cashier, card_id, 1_500)
    assert sale["card_balance"] == usd(1_000)
    assert card_balance(api, token, card_id) == 1_000
    assert auto_reloads_of(db, card_id) == []


def test_declined_reload_leaves_the_sale_standing(api, world, db, shopper, till):
    token, card_id = shopper
    store, _, cashier = till
    world.load(card_id, 1_500, cashier)
    set_auto_reload(
        api, token, card_id, threshold=1_000, amount=2_000, payment_token="tok_chargeDeclined"
    )
    sale = sell(api, world, db, cashier, card_id, 600)
    assert sale["card_balance"] == usd(900)
    assert card_balance(api, token, card_id) == 900
    assert api.get(f"/v1/sales/{sale['id']}", token=cashier).status_code == 200
    assert ledger.balance_of(db, store.sales_account_id) == 600
    assert [(t.status, t.decline_code) for t in auto_reloads_of(db, card_id)] == [
        ("declined", "card_declined")
    ]
    report = verify(db)
    assert report.ok, "\n".join(report.lines())


def test_deleting_auto_reload_turns_it_off(api, world, db, shopper, till):
    token, card_id = shopper
    _, _, cashier = till
    world.load(card_id, 1_500, cashier)
    set_auto_reload(api, token, card_id, threshold=1_000, amount=2_000)
    deleted = api.delete(f"/v1/cards/{card_id}/auto-reload", token=token)
    assert deleted.status_code == 204
    sell(api, world, db, cashier, card_id, 600)
    assert card_balance(api, token, card_id) == 900
    assert auto_reloads_of(db, card_id) == []


def test_auto_reload_amount_outside_the_top_up_range_is_refused(api, shopper):
    token, card_id = shopper
    response = api.put(
        f"/v1/cards/{card_id}/auto-reload",
        token=token,
        json={"threshold": usd(1_000), "amount": usd(MINIMUM - 1), "payment_token": "tok_visa"},
    )
    assert response.status_code == 422
    assert error_code(response) == "amount_out_of_range"


# -- real threads, real commits --------------------------------------------------------------


@pytest.mark.concurrent
def test_concurrent_retries_and_the_settle_command_credit_a_timed_out_top_up_once(app, committed):
    signup = app.test_client().post(
        "/v1/auth/signup",
        json={"email": "race@example.test", "password": "a long password", "name": "Ada"},
    )
    assert signup.status_code == 201, signup.json
    token, card_id = signup.json["token"], signup.json["customer"]["cards"][0]["id"]
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "k-race"}
    path = f"/v1/cards/{card_id}/top-ups"
    body = {"amount": usd(4_000), "payment_token": "tok_timeout"}
    assert app.test_client().post(path, json=body, headers=headers).status_code == 202

    retries = 4
    start = threading.Barrier(retries + 1)

    def retry():
        start.wait()
        return app.test_client().post(path, json=body, headers=headers).status_code

    def settle():
        start.wait()
        return app.test_cli_runner().invoke(args=["payments", "settle", "--older-than", "0"])

    with ThreadPoolExecutor(retries + 1) as pool:
        answers = [pool.submit(retry) for _ in range(retries)]
        command = pool.submit(settle)
        assert [a.result() for a in answers] == [201] * retries
        assert command.result().exit_code == 0, command.result().output

    with database(app).sessions() as s:
        account = card_account(s, card_id)
        assert ledger.balance_of(s, account) == 4_000
        assert postings_on(s, account) == 1
        assert [t.status for t in top_ups_of(s, card_id)] == ["succeeded"]


def test_retry_while_the_gateway_is_unreachable_stays_pending_and_credits_nothing(api, db, shopper):
    token, card_id = shopper
    first = top_up(api, token, card_id, 2_000, payment_token="tok_unreachable", key="lost-1")
    retry = top_up(api, token, card_id, 2_000, payment_token="tok_unreachable", key="lost-1")
    assert (first.status_code, retry.status_code) == (202, 202)
    assert retry.json["id"] == first.json["id"]
    assert retry.json["status"] == "pending"
    assert card_balance(api, token, card_id) == 0
    assert len(top_ups_of(db, card_id)) == 1


def test_settle_closes_a_top_up_the_processor_never_saw_as_not_charged(app, api, db, shopper):
    token, card_id = shopper
    first = top_up(api, token, card_id, 2_000, payment_token="tok_unreachable")
    assert first.status_code == 202
    result = app.test_cli_runner().invoke(args=["payments", "settle", "--older-than", "0"])
    assert result.exit_code == 0, result.output
    assert f"top-up {first.json['id']}: declined" in result.output
    after = api.get(f"/v1/top-ups/{first.json['id']}", token=token).json
    assert (after["status"], after["decline_code"]) == ("declined", "not_charged")
    assert card_balance(api, token, card_id) == 0


@pytest.mark.parametrize(
    ("header", "recorded"),
    [("web", "web"), ("app", "app"), ("<b>kiosk</b>", "app"), ("w\x01eb", "app")],
)
def test_a_top_up_records_its_channel_only_as_one_of_the_known_ones(
    api, db, shopper, header, recorded
):
    token, card_id = shopper

    response = top_up(api, token, card_id, headers={"X-Omnicard-Channel": header})

    assert response.status_code == 201, response.json
    assert [t.channel for t in top_ups_of(db, card_id)] == [recorded]
