"""Cards through real HTTP: gift card batches, registering a physical card, the primary card,
NFC tags, reporting a card lost, transfers between one's own cards, pay codes and activity.

Balances are read back through the API (GET /v1/me, GET /v1/cards/{id}); the database is read
directly only for what the API rightly never shows (security code hashes, ledger postings,
failed attempts) and written directly only to make a pay code expire without waiting.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, update

from app.cards import numbers
from app.cards.codes import CardCodeKeyMissing
from app.cards.models import Card, PayCode
from app.cards.services import issue_card
from app.core.throttle import FailedAttempt
from app.core.types import utcnow
from app.ledger.models import Account, LedgerTransaction, Posting
from app.sales.models import Sale

UID = "04:a2:3b:4c:5d:6e:80"
UID_NORMALISED = "04A23B4C5D6E80"


def usd(amount):
    return {"amount": amount, "currency": "USD"}


# --- reading state back -------------------------------------------------------------------


def get_card(api, token, card_id) -> dict:
    response = api.get(f"/v1/cards/{card_id}", token=token)
    assert response.status_code == 200, response.json
    return response.json


def balance(api, token, card_id) -> int:
    return get_card(api, token, card_id)["balance"]["amount"]


def my_cards(api, token) -> dict[int, dict]:
    response = api.get("/v1/me", token=token)
    assert response.status_code == 200, response.json
    return {card["id"]: card for card in response.json["cards"]}


def primary_ids(api, token) -> list[int]:
    return [card_id for card_id, card in my_cards(api, token).items() if card["primary"]]


def card_row(db, card_id) -> Card:
    db.expire_all()
    return db.get(Card, card_id)


def count_transactions(db, kind) -> int:
    return db.scalar(
        select(func.count()).select_from(LedgerTransaction).where(LedgerTransaction.kind == kind)
    )


def count_sales(db) -> int:
    return db.scalar(select(func.count()).select_from(Sale))


# --- doing things -------------------------------------------------------------------------


def register(api, token, number, security_code, ip="198.51.100.1"):
    return api.post(
        "/v1/me/cards",
        token=token,
        json={"number": number, "security_code": security_code},
        environ_base={"REMOTE_ADDR": ip},
    )


def sell(api, world, cashier, presented, price, tenders=None):
    """Ring up one product of ``price``, paid from the presented card unless told otherwise."""
    product = world.product(price=price)
    return api.post(
        "/v1/sales",
        token=cashier,
        json={
            "customer": presented,
            "lines": [{"sku": product.sku, "quantity": 1}],
            "tenders": tenders or [{"type": "card_balance", "amount": usd(price)}],
        },
    )


def transfer(api, token, from_id, to_id, amount, currency="USD", key="auto"):
    return api.post(
        f"/v1/cards/{from_id}/transfers",
        token=token,
        json={"to_card_id": to_id, "amount": {"amount": amount, "currency": currency}},
        key=key,
    )


def report_lost(api, token, card_id, key="auto"):
    return api.post(f"/v1/cards/{card_id}/report-lost", token=token, key=key)


def bind_nfc(api, token, card_id, uid):
    return api.put(f"/v1/cards/{card_id}/nfc", token=token, json={"uid": uid})


def pay_code(api, token, card_id=None):
    body = {} if card_id is None else {"card_id": card_id}
    return api.post("/v1/me/pay-codes", token=token, json=body)


def wrong(security_code: str) -> str:
    return f"{(int(security_code) + 1) % 10**8:08d}"


def unissued_number(db) -> str:
    while True:
        number = numbers.new_card_number()
        if db.scalar(select(Card.id).where(Card.number == number)) is None:
            return number


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def admin(world):
    return world.admin_token()


@pytest.fixture
def cashier(world):
    _store, _device, token = world.till()
    return token


#: What a gift card is sold for at the till in these tests (the smallest top-up).
GIFT_LOAD = 500


@pytest.fixture
def issue_gift_cards(api, admin, world):
    """``issue_gift_cards(size, sold_for=GIFT_LOAD)``: a batch issued through the API, each
    card then sold at a till for ``sold_for`` (None: left in the box, inactive); its cards as
    the batch answered."""

    def issue(size=1, sold_for=GIFT_LOAD):
        response = api.post("/v1/admin/card-batches", token=admin, json={"size": size})
        assert response.status_code == 201, response.json
        if sold_for is not None:
            _store, _device, till = world.till()
            for card in response.json["cards"]:
                world.sell_gift_card(card["number"], sold_for, till)
        return response.json["cards"]

    return issue


@pytest.fixture
def shopper(world):
    """A shopper's token and the id of their digital card (primary since sign-up)."""
    token, me = world.shopper("Ada")
    return token, me["cards"][0]["id"]


@pytest.fixture
def other_shopper(world):
    token, me = world.shopper("Bob")
    return token, me["cards"][0]["id"]


@pytest.fixture
def gift_of_shopper(api, shopper, issue_gift_cards):
    """A physical gift card registered to ``shopper``: its id and number."""
    token, _ = shopper
    gift = issue_gift_cards(1)[0]
    assert register(api, token, gift["number"], gift["security_code"]).status_code == 201
    return gift["id"], gift["number"]


@pytest.fixture
def register_limits(app, monkeypatch):
    """Lower the registration guessing limits for one test (monkeypatch puts them back)."""

    def set_limits(account=100, ip=100, card=100):
        monkeypatch.setitem(app.config, "REGISTER_MAX_FAILURES_ACCOUNT", account)
        monkeypatch.setitem(app.config, "REGISTER_MAX_FAILURES_IP", ip)
        monkeypatch.setitem(app.config, "REGISTER_MAX_FAILURES_CARD", card)

    return set_limits


# --- gift card batches --------------------------------------------------------------------


def test_a_batch_of_gift_cards_has_luhn_numbers_and_eight_digit_security_codes(
    issue_gift_cards,
):
    cards = issue_gift_cards(5)
    assert len(cards) == 5
    assert len({card["number"] for card in cards}) == 5
    assert len({card["id"] for card in cards}) == 5
    for card in cards:
        assert re.fullmatch(r"6\d{15}", card["number"])
        assert numbers.luhn_valid(card["number"])
        assert re.fullmatch(r"\d{8}", card["security_code"])


def test_batch_security_codes_are_stored_only_as_hmacs_under_the_server_key(
    app, db, issue_gift_cards
):
    key = app.config["CARD_CODE_KEY"].encode()
    for issued in issue_gift_cards(2):
        code = issued["security_code"]
        row = db.execute(select(Card.__table__).where(Card.id == issued["id"])).one()
        expected = hmac.new(key, code.encode(), hashlib.sha256).hexdigest()
        assert row.security_code_hash == f"hmac-sha256${expected}"
        assert not any(code in str(value) for value in row)


def test_a_card_issued_with_an_argon2_hashed_code_still_registers(api, db, world, issue_gift_cards):
    gift = issue_gift_cards(1)[0]
    db.execute(
        update(Card)
        .where(Card.id == gift["id"])
        .values(security_code_hash=PasswordHasher(time_cost=1, memory_cost=1024).hash("24681357"))
    )
    token, _ = world.shopper()
    assert register(api, token, gift["number"], gift["security_code"]).status_code == 422

    response = register(api, token, gift["number"], "24681357")

    assert response.status_code == 201, response.json


def test_a_batch_of_a_thousand_cards_answers_within_seconds_at_production_hashing_cost(
    app, api, db, admin, monkeypatch
):
    """Each code once cost an argon2 hash: 499 cards ran past a 30 s client timeout."""
    monkeypatch.setitem(app.config, "ARGON2_TIME_COST", 3)
    monkeypatch.setitem(app.config, "ARGON2_MEMORY_KIB", 64 * 1024)
    started = time.monotonic()

    response = api.post("/v1/admin/card-batches", token=admin, json={"size": 1000})

    assert response.status_code == 201, response.json
    assert time.monotonic() - started < 15
    assert len(response.json["cards"]) == 1000
    assert db.scalar(select(func.count()).select_from(Card).where(Card.kind == "physical")) == 1000


def test_without_a_card_code_key_no_batch_is_issued(app, api, db, admin, monkeypatch):
    monkeypatch.setitem(app.config, "CARD_CODE_KEY", "")

    with pytest.raises(CardCodeKeyMissing, match="OMNICARD_CARD_CODE_KEY"):
        api.post("/v1/admin/card-batches", token=admin, json={"size": 1})

    assert db.scalar(select(func.count()).select_from(Card).where(Card.kind == "physical")) == 0


def test_batch_cards_are_unregistered_empty_inactive_physical_cards(api, admin, issue_gift_cards):
    issued = issue_gift_cards(1, sold_for=None)[0]
    response = api.get(f"/v1/cards/{issued['id']}", token=admin)
    assert response.status_code == 200
    body = response.json
    assert body["kind"] == "physical"
    assert body["status"] == "inactive"
    assert body["registered"] is False
    assert body["primary"] is False
    assert body["balance"] == usd(0)
    assert body["last4"] == issued["number"][-4:]
    # The security code was shown once, in the batch's answer; never again.
    assert issued["security_code"] not in response.get_data(as_text=True)
    assert issued["number"] not in response.get_data(as_text=True)


def test_only_an_admin_may_issue_gift_cards(api, db, cashier, shopper):
    token, _ = shopper
    for caller in (token, cashier):
        response = api.post("/v1/admin/card-batches", token=caller, json={"size": 2})
        assert response.status_code == 403
        assert response.json["error"]["code"] == "forbidden"
    assert db.scalar(select(func.count()).select_from(Card).where(Card.kind == "physical")) == 0


@pytest.mark.parametrize("size", [0, 1001, "3", 2.5])
def test_a_batch_size_must_be_a_whole_number_from_1_to_1000(api, db, admin, size):
    response = api.post("/v1/admin/card-batches", token=admin, json={"size": size})
    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert db.scalar(select(func.count()).select_from(Card).where(Card.kind == "physical")) == 0


def test_a_gift_card_is_loaded_and_spent_at_the_till_by_its_number_without_an_account(
    api, world, admin, cashier, issue_gift_cards
):
    gift = issue_gift_cards(1, sold_for=2000)[0]

    response = sell(api, world, cashier, {"card_number": gift["number"]}, 450)

    assert response.status_code == 201, response.json
    assert response.json["card_id"] == gift["id"]
    assert response.json["customer_id"] is None
    assert response.json["stars_earned"] == 0
    assert response.json["card_balance"] == usd(1550)
    assert balance(api, admin, gift["id"]) == 1550


# --- registering a physical card ----------------------------------------------------------


def test_registering_a_gift_card_makes_it_the_shoppers_with_its_balance(
    api, world, cashier, shopper, issue_gift_cards
):
    token, digital_id = shopper
    gift = issue_gift_cards(1, sold_for=1000)[0]

    response = register(api, token, gift["number"], gift["security_code"])

    assert response.status_code == 201, response.json
    assert response.json["id"] == gift["id"]
    assert response.json["registered"] is True
    assert response.json["kind"] == "physical"
    assert response.json["primary"] is False
    assert response.json["balance"] == usd(1000)
    cards = my_cards(api, token)
    assert set(cards) == {digital_id, gift["id"]}
    assert cards[gift["id"]]["balance"] == usd(1000)
    assert primary_ids(api, token) == [digital_id]


def test_a_shopper_may_register_several_cards_and_keeps_exactly_one_primary(
    api, shopper, issue_gift_cards
):
    token, digital_id = shopper
    first, second = issue_gift_cards(2)

    assert register(api, token, first["number"], first["security_code"]).status_code == 201
    assert register(api, token, second["number"], second["security_code"]).status_code == 201

    assert set(my_cards(api, token)) == {digital_id, first["id"], second["id"]}
    assert primary_ids(api, token) == [digital_id]


def test_every_kind_of_bad_card_details_gets_the_same_answer(
    api, db, admin, shopper, other_shopper, issue_gift_cards
):
    token, digital_id = shopper
    owner_token, _ = other_shopper
    gift, taken = issue_gift_cards(2)
    assert register(api, owner_token, taken["number"], taken["security_code"]).status_code == 201
    attempts = {
        "wrong security code": (gift["number"], wrong(gift["security_code"])),
        "unknown number": (unissued_number(db), gift["security_code"]),
        "registered to someone else": (taken["number"], taken["security_code"]),
        "a digital card's number": (card_row(db, digital_id).number, gift["security_code"]),
    }

    answers = {}
    for what, (number, code) in attempts.items():
        response = register(api, token, number, code)
        assert response.status_code == 422, what
        answers[what] = response.json

    assert answers["wrong security code"]["error"]["code"] == "invalid_card_details"
    for what, answer in answers.items():
        assert answer == answers["wrong security code"], what
    assert set(my_cards(api, token)) == {digital_id}
    assert get_card(api, admin, gift["id"])["registered"] is False
    assert set(my_cards(api, owner_token)) >= {taken["id"]}


def test_registering_a_card_twice_to_the_same_account_gets_the_same_answer_too(
    api, shopper, issue_gift_cards
):
    token, _ = shopper
    gift = issue_gift_cards(1)[0]
    assert register(api, token, gift["number"], gift["security_code"]).status_code == 201

    again = register(api, token, gift["number"], gift["security_code"])
    wrong_code = register(api, token, gift["number"], wrong(gift["security_code"]))

    assert again.status_code == 422
    assert again.json == wrong_code.json
    assert again.json["error"]["code"] == "invalid_card_details"


def test_a_failed_registration_is_counted_though_the_request_fails(api, db, world):
    token, me = world.shopper()
    number = unissued_number(db)

    response = register(api, token, number, "12345678", ip="203.0.113.9")

    assert response.status_code == 422
    recorded = db.execute(select(FailedAttempt.scope, FailedAttempt.subject)).all()
    assert sorted(recorded) == sorted(
        [
            ("card_register:customer", str(me["id"])),
            ("card_register:address", "203.0.113.9"),
            ("card_code:card", number),
        ]
    )


def test_registration_guesses_are_limited_per_account(
    api, db, admin, world, register_limits, issue_gift_cards
):
    register_limits(account=2)
    gift = issue_gift_cards(1)[0]
    token, _ = world.shopper()
    for ip in ("198.51.100.1", "198.51.100.2"):
        assert register(api, token, unissued_number(db), "12345678", ip=ip).status_code == 422

    refused = register(api, token, gift["number"], gift["security_code"], ip="198.51.100.3")

    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "too_many_attempts"
    assert get_card(api, admin, gift["id"])["registered"] is False
    # The card and the address are not blocked: only this account is.
    someone_else, _ = world.shopper()
    assert (
        register(api, someone_else, gift["number"], gift["security_code"], ip="198.51.100.3")
    ).status_code == 201


def test_guessing_from_one_address_slows_its_guessers_but_not_its_other_shoppers(
    api, db, admin, world, register_limits, issue_gift_cards
):
    """A shop's or a campus's shared network: many shoppers, one address."""
    register_limits(ip=2)
    gift, other = issue_gift_cards(2)
    guesser, _ = world.shopper()
    for _ in range(2):
        assert (
            register(api, guesser, unissued_number(db), "12345678", ip="203.0.113.7").status_code
            == 422
        )

    refused = register(api, guesser, gift["number"], gift["security_code"], ip="203.0.113.7")
    holder, _ = world.shopper()
    allowed = register(api, holder, other["number"], other["security_code"], ip="203.0.113.7")

    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "too_many_attempts"
    assert get_card(api, admin, gift["id"])["registered"] is False
    assert allowed.status_code == 201, allowed.json


def test_guessing_at_one_card_does_not_keep_its_holder_from_registering_it(
    api, admin, world, register_limits, issue_gift_cards
):
    register_limits(card=2)
    target, _ = issue_gift_cards(2)
    guessers = [world.shopper()[0] for _ in range(2)]
    for n, guesser in enumerate(guessers):
        ip = f"192.0.2.{n + 1}"
        response = register(api, guesser, target["number"], wrong(target["security_code"]), ip=ip)
        assert response.status_code == 422
    # While the card is under attack, a guesser who has failed at it waits, right code or not.
    refused = register(api, guessers[0], target["number"], target["security_code"], ip="192.0.2.1")
    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "too_many_attempts"
    # ...until its own failure is an hour old, though the card's count lasts a day.
    assert refused.json["error"]["details"]["retry_after_s"] == 3600
    assert get_card(api, admin, target["id"])["registered"] is False
    holder, _ = world.shopper()

    response = register(api, holder, target["number"], target["security_code"], ip="192.0.2.9")

    assert response.status_code == 201, response.json
    assert get_card(api, admin, target["id"])["registered"] is True


# --- the primary card ---------------------------------------------------------------------


def test_making_another_card_primary_leaves_exactly_one_primary(api, shopper, gift_of_shopper):
    token, digital_id = shopper
    gift_id, _ = gift_of_shopper

    response = api.put(f"/v1/cards/{gift_id}/primary", token=token)

    assert response.status_code == 200
    assert response.json["primary"] is True
    assert primary_ids(api, token) == [gift_id]
    assert api.put(f"/v1/cards/{digital_id}/primary", token=token).status_code == 200
    assert primary_ids(api, token) == [digital_id]


def test_making_the_primary_card_primary_again_changes_nothing(api, shopper, gift_of_shopper):
    token, digital_id = shopper

    response = api.put(f"/v1/cards/{digital_id}/primary", token=token)

    assert response.status_code == 200
    assert primary_ids(api, token) == [digital_id]


def test_another_shoppers_card_cannot_be_made_primary(api, shopper, other_shopper):
    token, digital_id = shopper
    other_token, other_card = other_shopper

    response = api.put(f"/v1/cards/{other_card}/primary", token=token)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "card_not_found"
    assert primary_ids(api, token) == [digital_id]
    assert primary_ids(api, other_token) == [other_card]


def test_a_frozen_card_cannot_be_made_primary(api, shopper, gift_of_shopper):
    token, digital_id = shopper
    gift_id, _ = gift_of_shopper
    assert report_lost(api, token, gift_id).status_code == 200

    response = api.put(f"/v1/cards/{gift_id}/primary", token=token)

    assert response.status_code == 409
    assert response.json["error"]["code"] == "card_frozen"
    assert primary_ids(api, token) == [digital_id]


# --- NFC tags -----------------------------------------------------------------------------


def test_the_owner_binds_an_nfc_uid_to_their_own_card_stored_normalised(api, db, cashier, shopper):
    token, card_id = shopper

    response = bind_nfc(api, token, card_id, UID)

    assert response.status_code == 200, response.json
    assert response.json["nfc_bound"] is True
    assert card_row(db, card_id).nfc_uid == UID_NORMALISED
    lookup = api.post("/v1/pos/lookups", token=cashier, json={"nfc_uid": "04a23b4c5d6e80"})
    assert lookup.status_code == 200
    assert lookup.json["id"] == card_id


def test_a_shopper_cannot_bind_a_tag_to_another_shoppers_card(api, db, shopper, other_shopper):
    token, _ = shopper
    other_token, other_card = other_shopper

    response = bind_nfc(api, token, other_card, UID)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "card_not_found"
    assert card_row(db, other_card).nfc_uid is None


@pytest.mark.parametrize("caller", ["cashier", "admin"])
def test_staff_cannot_bind_a_tag_to_a_card_by_its_id_and_then_pay_with_it(
    api, db, world, cashier, admin, shopper, caller
):
    """The attack: bind one's own tag to any shopper's card by id, then spend its balance."""
    token, card_id = shopper
    world.load(card_id, 2000, cashier)
    transactions_before = count_transactions(db, "sale")

    response = bind_nfc(api, {"cashier": cashier, "admin": admin}[caller], card_id, UID)

    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"
    assert card_row(db, card_id).nfc_uid is None
    paid = sell(api, world, cashier, {"nfc_uid": UID}, 500)
    assert paid.status_code == 422
    assert paid.json["error"]["code"] == "customer_not_identified"
    assert balance(api, token, card_id) == 2000
    assert count_transactions(db, "sale") == transactions_before


def bind_at_till(api, cashier, uid, **card):
    return api.post("/v1/pos/nfc-bindings", token=cashier, json={"uid": uid, "card": card})


@pytest.mark.parametrize(
    "card",
    [
        {},
        {"card_number": "6000000000000000"},
        {"security_code": "12345678"},
        {"card_number": "6000000000000000", "pay_code": "123456789012"},
    ],
    ids=["nothing", "number-alone", "code-alone", "number-and-pay-code"],
)
def test_a_till_cannot_bind_a_tag_without_proof_that_the_holder_is_there(
    api, db, cashier, gift_of_shopper, card
):
    gift_id, number = gift_of_shopper
    card = {k: number if k == "card_number" else v for k, v in card.items()}

    response = bind_at_till(api, cashier, UID, **card)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"
    assert card_row(db, gift_id).nfc_uid is None


def test_a_till_binds_a_tag_to_a_physical_card_shown_with_its_security_code(
    api, db, world, cashier, shopper, issue_gift_cards
):
    token, _ = shopper
    gift = issue_gift_cards(1)[0]
    assert register(api, token, gift["number"], gift["security_code"]).status_code == 201
    world.load(gift["id"], 2000, cashier)

    response = bind_at_till(
        api, cashier, UID, card_number=gift["number"], security_code=gift["security_code"]
    )

    assert response.status_code == 200, response.json
    assert response.json["id"] == gift["id"]
    assert card_row(db, gift["id"]).nfc_uid == UID_NORMALISED
    paid = sell(api, world, cashier, {"nfc_uid": UID}, 500)
    assert paid.status_code == 201, paid.json
    assert balance(api, token, gift["id"]) == GIFT_LOAD + 1500


def test_a_till_binding_with_a_wrong_security_code_binds_nothing_and_is_counted(
    api, db, cashier, gift_of_shopper, issue_gift_cards
):
    gift_id, number = gift_of_shopper

    response = bind_at_till(api, cashier, UID, card_number=number, security_code="00000000")

    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_card_details"
    assert card_row(db, gift_id).nfc_uid is None
    scopes = {scope for (scope,) in db.execute(select(FailedAttempt.scope))}
    assert scopes == {"card_code:till", "card_code:card"}


def test_a_till_binds_a_tag_to_the_card_of_a_pay_code_which_is_used_up(
    api, db, world, cashier, shopper
):
    token, card_id = shopper
    code = pay_code(api, token).json["code"]

    response = bind_at_till(api, cashier, UID, pay_code=code)

    assert response.status_code == 200, response.json
    assert response.json["id"] == card_id
    assert card_row(db, card_id).nfc_uid == UID_NORMALISED
    again = bind_at_till(api, cashier, "04:a2:3b:4c", pay_code=code)
    assert again.status_code == 422
    assert again.json["error"]["code"] == "pay_code_invalid"
    assert card_row(db, card_id).nfc_uid == UID_NORMALISED


def test_an_nfc_uid_bound_to_another_card_is_refused(api, cashier, shopper, other_shopper):
    token, card_id = shopper
    other_token, other_card = other_shopper
    assert bind_nfc(api, token, card_id, "04:a2:3b:4c").status_code == 200

    response = bind_nfc(api, other_token, other_card, "04A23B4C")  # the same tag, spelt otherwise

    assert response.status_code == 409
    assert response.json["error"]["code"] == "nfc_uid_in_use"
    assert get_card(api, other_token, other_card)["nfc_bound"] is False
    lookup = api.post("/v1/pos/lookups", token=cashier, json={"nfc_uid": "04a23b4c"})
    assert lookup.json["id"] == card_id


def test_binding_the_same_uid_to_the_same_card_again_is_fine(api, db, shopper):
    token, card_id = shopper
    assert bind_nfc(api, token, card_id, UID).status_code == 200

    response = bind_nfc(api, token, card_id, UID.upper())

    assert response.status_code == 200
    assert card_row(db, card_id).nfc_uid == UID_NORMALISED


@pytest.mark.parametrize(
    "uid",
    ["", "04a23b", "0011223344556677889900", "04a23b4c5", "04:a2:3b:zz", "04a2.3b4c.5d"],
)
def test_a_malformed_nfc_uid_is_refused(api, db, shopper, uid):
    token, card_id = shopper

    response = bind_nfc(api, token, card_id, uid)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_nfc_uid"
    assert get_card(api, token, card_id)["nfc_bound"] is False
    assert card_row(db, card_id).nfc_uid is None


@pytest.fixture
def nfc_card(api, world, cashier, shopper):
    """The shopper's card with 50.00 on it and an NFC tag bound to it."""
    token, card_id = shopper
    assert bind_nfc(api, token, card_id, UID).status_code == 200
    world.load(card_id, 5000, cashier)
    return token, card_id


def test_a_sale_by_nfc_uid_alone_takes_up_to_the_limit(app, api, world, cashier, nfc_card):
    token, card_id = nfc_card
    limit = app.config["NFC_UID_LIMIT_MINOR"]

    response = sell(api, world, cashier, {"nfc_uid": UID_NORMALISED.lower()}, limit)

    assert response.status_code == 201, response.json
    assert response.json["card_id"] == card_id
    assert balance(api, token, card_id) == 5000 - limit


def test_a_sale_by_nfc_uid_alone_above_the_limit_is_refused_and_changes_nothing(
    app, api, db, world, cashier, nfc_card
):
    token, card_id = nfc_card
    limit = app.config["NFC_UID_LIMIT_MINOR"]

    response = sell(api, world, cashier, {"nfc_uid": UID}, limit + 1)

    assert response.status_code == 409
    assert response.json["error"]["code"] == "nfc_limit_exceeded"
    assert response.json["error"]["details"] == {"limit": limit}
    assert balance(api, token, card_id) == 5000
    assert count_sales(db) == 0


def test_the_nfc_limit_counts_only_what_the_card_pays(app, api, world, cashier, nfc_card):
    token, card_id = nfc_card
    limit = app.config["NFC_UID_LIMIT_MINOR"]
    tenders = [
        {"type": "card_balance", "amount": usd(limit)},
        {"type": "cash", "amount": usd(1500)},
    ]

    response = sell(api, world, cashier, {"nfc_uid": UID}, limit + 1500, tenders=tenders)

    assert response.status_code == 201, response.json
    assert balance(api, token, card_id) == 5000 - limit


def test_the_nfc_limit_is_taken_from_configuration(app, api, world, cashier, nfc_card, monkeypatch):
    token, card_id = nfc_card
    monkeypatch.setitem(app.config, "NFC_UID_LIMIT_MINOR", 1000)

    refused = sell(api, world, cashier, {"nfc_uid": UID}, 1001)
    allowed = sell(api, world, cashier, {"nfc_uid": UID}, 1000)

    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "nfc_limit_exceeded"
    assert allowed.status_code == 201
    assert balance(api, token, card_id) == 4000


def test_the_same_card_presented_by_its_number_pays_above_the_nfc_limit(
    app, api, db, world, cashier, nfc_card
):
    token, card_id = nfc_card
    price = app.config["NFC_UID_LIMIT_MINOR"] + 1

    response = sell(api, world, cashier, {"card_number": card_row(db, card_id).number}, price)

    assert response.status_code == 201
    assert balance(api, token, card_id) == 5000 - price


# --- reporting a card lost ----------------------------------------------------------------


def test_reporting_the_primary_card_lost_moves_its_balance_to_a_new_primary_card(
    api, world, cashier, shopper
):
    token, card_id = shopper
    world.load(card_id, 3000, cashier)

    response = report_lost(api, token, card_id)

    assert response.status_code == 200, response.json
    lost, replacement = response.json["lost_card"], response.json["replacement_card"]
    assert lost["id"] == card_id
    assert lost["status"] == "frozen"
    assert lost["primary"] is False
    assert lost["balance"] == usd(0)
    assert lost["replaced_by_id"] == replacement["id"]
    assert replacement["kind"] == "digital"
    assert replacement["status"] == "active"
    assert replacement["primary"] is True
    assert replacement["balance"] == usd(3000)
    cards = my_cards(api, token)
    assert set(cards) == {card_id, replacement["id"]}
    assert cards[card_id]["status"] == "frozen"
    assert primary_ids(api, token) == [replacement["id"]]


def test_a_lost_cards_balance_moves_in_one_ledger_transaction(api, db, world, cashier, shopper):
    token, card_id = shopper
    world.load(card_id, 3000, cashier)

    replacement_id = report_lost(api, token, card_id).json["replacement_card"]["id"]

    lost_account = card_row(db, card_id).account_id
    new_account = card_row(db, replacement_id).account_id
    into_new = db.execute(
        select(Posting.transaction_id, Posting.amount).where(Posting.account_id == new_account)
    ).all()
    assert len(into_new) == 1
    move_id, amount = into_new[0]
    assert amount == 3000
    assert db.get(LedgerTransaction, move_id).kind == "lost_card_move"
    legs = db.execute(
        select(Posting.account_id, Posting.amount, Posting.unit).where(
            Posting.transaction_id == move_id
        )
    ).all()
    assert sorted(legs) == sorted([(lost_account, -3000, "USD"), (new_account, 3000, "USD")])
    assert count_transactions(db, "lost_card_move") == 1
    db.expire_all()
    assert db.get(Account, lost_account).frozen is True


def test_a_lost_card_that_was_not_primary_gets_a_replacement_that_is_not_primary(
    api, world, cashier, shopper, gift_of_shopper
):
    token, digital_id = shopper
    gift_id, _ = gift_of_shopper
    world.load(gift_id, 1000, cashier)

    response = report_lost(api, token, gift_id)

    assert response.status_code == 200
    replacement = response.json["replacement_card"]
    assert replacement["primary"] is False
    assert replacement["balance"] == usd(GIFT_LOAD + 1000)
    assert primary_ids(api, token) == [digital_id]


def test_a_lost_card_with_nothing_on_it_is_frozen_and_replaced_without_a_posting(api, db, shopper):
    token, digital_id = shopper  # nothing on it since sign-up

    response = report_lost(api, token, digital_id)

    assert response.status_code == 200
    assert response.json["lost_card"]["status"] == "frozen"
    assert response.json["replacement_card"]["balance"] == usd(0)
    assert count_transactions(db, "lost_card_move") == 0


def test_a_frozen_card_cannot_pay_by_its_number(api, db, world, cashier, shopper, gift_of_shopper):
    token, _ = shopper
    gift_id, number = gift_of_shopper
    world.load(gift_id, 1000, cashier)
    replacement_id = report_lost(api, token, gift_id).json["replacement_card"]["id"]

    response = sell(api, world, cashier, {"card_number": number}, 450)

    assert response.status_code == 409
    assert response.json["error"]["code"] == "card_frozen"
    assert count_sales(db) == 0
    assert balance(api, token, replacement_id) == GIFT_LOAD + 1000


def test_a_frozen_card_cannot_be_topped_up(api, cashier, shopper, gift_of_shopper):
    token, _ = shopper
    gift_id, _ = gift_of_shopper
    assert report_lost(api, token, gift_id).status_code == 200

    response = api.post(
        f"/v1/cards/{gift_id}/top-ups",
        token=cashier,
        json={"amount": usd(1000), "tender": "cash"},
    )

    assert response.status_code == 409
    assert response.json["error"]["code"] == "card_frozen"
    assert balance(api, token, gift_id) == 0


def test_a_lost_cards_nfc_tag_no_longer_identifies_it(api, world, cashier, nfc_card):
    token, card_id = nfc_card
    replacement_id = report_lost(api, token, card_id).json["replacement_card"]["id"]

    response = sell(api, world, cashier, {"nfc_uid": UID}, 450)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "customer_not_identified"
    assert get_card(api, token, card_id)["nfc_bound"] is False
    assert balance(api, token, replacement_id) == 5000


def test_a_card_can_be_reported_lost_only_once(api, world, cashier, shopper):
    token, card_id = shopper
    world.load(card_id, 3000, cashier)
    replacement_id = report_lost(api, token, card_id).json["replacement_card"]["id"]

    again = report_lost(api, token, card_id)

    assert again.status_code == 409
    assert again.json["error"]["code"] == "card_frozen"
    assert set(my_cards(api, token)) == {card_id, replacement_id}
    assert balance(api, token, replacement_id) == 3000
    assert primary_ids(api, token) == [replacement_id]


def test_a_replayed_report_lost_answers_the_same_and_makes_one_replacement(
    api, shopper, gift_of_shopper
):
    token, _ = shopper
    gift_id, _ = gift_of_shopper

    first = report_lost(api, token, gift_id, key="lost-1")
    replay = report_lost(api, token, gift_id, key="lost-1")

    assert first.status_code == replay.status_code == 200
    assert replay.json == first.json
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(my_cards(api, token)) == 3


def test_another_shoppers_card_cannot_be_reported_lost(api, shopper, other_shopper):
    token, _ = shopper
    other_token, other_card = other_shopper

    response = report_lost(api, token, other_card)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "card_not_found"
    assert get_card(api, other_token, other_card)["status"] == "active"
    assert set(my_cards(api, other_token)) == {other_card}


# --- transfers between one's own cards ----------------------------------------------------


@pytest.fixture
def two_cards(app, db, world, cashier, shopper):
    """The shopper's token, their digital card (30.00 on it) and a second, empty card."""
    token, digital_id = shopper
    with app.app_context():
        second = issue_card(db, kind="digital", customer_id=db.get(Card, digital_id).customer_id)
    world.load(digital_id, 3000, cashier)
    return token, digital_id, second.id


def test_a_transfer_moves_balance_between_ones_own_cards(api, db, two_cards):
    token, digital_id, gift_id = two_cards

    response = transfer(api, token, digital_id, gift_id, 1200)

    assert response.status_code == 201, response.json
    assert response.json["amount"] == usd(1200)
    assert response.json["from_card"]["balance"] == usd(1800)
    assert response.json["to_card"]["balance"] == usd(1200)
    assert balance(api, token, digital_id) == 1800
    assert balance(api, token, gift_id) == 1200
    legs = db.execute(
        select(Posting.amount).where(Posting.transaction_id == response.json["transaction_id"])
    ).scalars()
    assert sorted(legs) == [-1200, 1200]


def test_a_transfer_of_the_whole_balance_empties_the_card(api, two_cards):
    token, digital_id, gift_id = two_cards

    response = transfer(api, token, digital_id, gift_id, 3000)

    assert response.status_code == 201
    assert balance(api, token, digital_id) == 0
    assert balance(api, token, gift_id) == 3000


def test_a_transfer_of_more_than_the_balance_is_refused_and_changes_nothing(api, db, two_cards):
    token, digital_id, gift_id = two_cards

    response = transfer(api, token, digital_id, gift_id, 3001)

    assert response.status_code == 409
    assert response.json["error"]["code"] == "insufficient_funds"
    assert balance(api, token, digital_id) == 3000
    assert balance(api, token, gift_id) == 0
    assert count_transactions(db, "card_transfer") == 0


def test_a_transfer_above_the_target_cards_maximum_balance_is_refused(
    app, api, db, world, cashier, two_cards
):
    token, digital_id, gift_id = two_cards
    maximum = app.config["CARD_MAX_BALANCE_MINOR"]
    assert maximum == 50_000
    world.load(gift_id, 25_000, cashier)
    world.load(gift_id, 24_000, cashier)

    refused = transfer(api, token, digital_id, gift_id, 1001)

    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "balance_limit_exceeded"
    assert balance(api, token, digital_id) == 3000
    assert balance(api, token, gift_id) == 49_000
    assert count_transactions(db, "card_transfer") == 0
    assert transfer(api, token, digital_id, gift_id, 1000).status_code == 201
    assert balance(api, token, gift_id) == maximum


def test_a_transfer_to_the_same_card_is_refused(api, db, two_cards):
    token, digital_id, _ = two_cards

    response = transfer(api, token, digital_id, digital_id, 500)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "same_card"
    assert balance(api, token, digital_id) == 3000
    assert count_transactions(db, "card_transfer") == 0


def test_a_transfer_to_another_shoppers_card_is_not_found(api, db, two_cards, other_shopper):
    token, digital_id, _ = two_cards
    other_token, other_card = other_shopper

    response = transfer(api, token, digital_id, other_card, 500)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "card_not_found"
    assert balance(api, token, digital_id) == 3000
    assert balance(api, other_token, other_card) == 0
    assert count_transactions(db, "card_transfer") == 0


def test_a_transfer_from_another_shoppers_card_is_not_found(
    api, db, world, cashier, two_cards, other_shopper
):
    token, digital_id, _ = two_cards
    other_token, other_card = other_shopper
    world.load(other_card, 1000, cashier)

    response = transfer(api, token, other_card, digital_id, 500)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "card_not_found"
    assert balance(api, other_token, other_card) == 1000
    assert balance(api, token, digital_id) == 3000


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ({"amount": 0, "currency": "USD"}, "validation_error"),
        ({"amount": -500, "currency": "USD"}, "validation_error"),
        ({"amount": 12.5, "currency": "USD"}, "validation_error"),
        ({"amount": 1.0, "currency": "USD"}, "validation_error"),
        ({"amount": "12", "currency": "USD"}, "validation_error"),
        ({"amount": True, "currency": "USD"}, "validation_error"),
        ({"amount": None, "currency": "USD"}, "validation_error"),
        ({"amount": 10**13, "currency": "USD"}, "validation_error"),
        ({"amount": 500}, "validation_error"),
        ({"amount": 500, "currency": "usd"}, "validation_error"),
        ({"amount": 500, "currency": "EUR"}, "currency_mismatch"),
    ],
    ids=lambda v: repr(v),
)
def test_a_malformed_transfer_amount_is_refused_and_changes_nothing(
    api, db, two_cards, amount, code
):
    token, digital_id, gift_id = two_cards

    response = api.post(
        f"/v1/cards/{digital_id}/transfers",
        token=token,
        json={"to_card_id": gift_id, "amount": amount},
    )

    assert response.status_code == 422
    assert response.json["error"]["code"] == code
    assert balance(api, token, digital_id) == 3000
    assert balance(api, token, gift_id) == 0
    assert count_transactions(db, "card_transfer") == 0


def test_a_transfer_needs_an_idempotency_key(api, db, two_cards):
    token, digital_id, gift_id = two_cards

    response = transfer(api, token, digital_id, gift_id, 500, key=None)

    assert response.status_code == 400
    assert response.json["error"]["code"] == "idempotency_key_missing"
    assert balance(api, token, digital_id) == 3000


def test_a_replayed_transfer_moves_money_once(api, db, two_cards):
    token, digital_id, gift_id = two_cards

    first = transfer(api, token, digital_id, gift_id, 700, key="move-1")
    replay = transfer(api, token, digital_id, gift_id, 700, key="move-1")

    assert first.status_code == replay.status_code == 201
    assert replay.json == first.json
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert balance(api, token, digital_id) == 2300
    assert balance(api, token, gift_id) == 700
    assert count_transactions(db, "card_transfer") == 1


def test_an_idempotency_key_reused_with_a_different_body_is_refused(api, db, two_cards):
    token, digital_id, gift_id = two_cards
    assert transfer(api, token, digital_id, gift_id, 700, key="move-1").status_code == 201

    response = transfer(api, token, digital_id, gift_id, 800, key="move-1")

    assert response.status_code == 409
    assert response.json["error"]["code"] == "idempotency_key_reused"
    assert balance(api, token, digital_id) == 2300
    assert balance(api, token, gift_id) == 700
    assert count_transactions(db, "card_transfer") == 1


def test_a_frozen_card_can_neither_send_nor_receive_a_transfer(api, db, two_cards):
    token, digital_id, gift_id = two_cards
    replacement_id = report_lost(api, token, gift_id).json["replacement_card"]["id"]

    sending = transfer(api, token, gift_id, replacement_id, 1)
    receiving = transfer(api, token, digital_id, gift_id, 500)

    for response in (sending, receiving):
        assert response.status_code == 409
        assert response.json["error"]["code"] == "card_frozen"
    assert balance(api, token, digital_id) == 3000
    assert balance(api, token, gift_id) == 0
    assert count_transactions(db, "card_transfer") == 0


# --- pay codes ----------------------------------------------------------------------------


@pytest.fixture
def loaded_shopper(world, cashier, shopper):
    """The shopper's token and their digital (primary) card with 30.00 on it."""
    token, card_id = shopper
    world.load(card_id, 3000, cashier)
    return token, card_id


def test_a_pay_code_names_the_primary_card_for_about_a_minute(api, loaded_shopper):
    token, card_id = loaded_shopper
    before = utcnow()

    response = pay_code(api, token)

    assert response.status_code == 201, response.json
    assert re.fullmatch(r"\d{12}", response.json["code"])
    assert response.json["card_id"] == card_id
    expires_at = datetime.fromisoformat(response.json["expires_at"]).astimezone(UTC)
    assert before + timedelta(seconds=30) < expires_at <= utcnow() + timedelta(seconds=60)


def test_a_pay_code_identifies_the_card_at_the_till(api, world, cashier, loaded_shopper):
    token, card_id = loaded_shopper
    code = pay_code(api, token).json["code"]

    response = sell(api, world, cashier, {"pay_code": code}, 450)

    assert response.status_code == 201, response.json
    assert response.json["card_id"] == card_id
    assert response.json["customer_id"] == api.get("/v1/me", token=token).json["id"]
    assert response.json["card_balance"] == usd(2550)
    assert balance(api, token, card_id) == 2550


def test_a_pay_code_works_only_once(api, db, world, cashier, loaded_shopper):
    token, card_id = loaded_shopper
    code = pay_code(api, token).json["code"]
    assert sell(api, world, cashier, {"pay_code": code}, 450).status_code == 201

    again = sell(api, world, cashier, {"pay_code": code}, 450)

    assert again.status_code == 422
    assert again.json["error"]["code"] == "pay_code_invalid"
    assert balance(api, token, card_id) == 2550
    assert count_sales(db) == 1


def test_an_expired_pay_code_is_refused(api, db, world, cashier, loaded_shopper):
    token, card_id = loaded_shopper
    code = pay_code(api, token).json["code"]
    db.execute(
        update(PayCode)
        .where(PayCode.card_id == card_id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )

    response = sell(api, world, cashier, {"pay_code": code}, 450)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "pay_code_invalid"
    assert balance(api, token, card_id) == 3000
    assert count_sales(db) == 0


def test_a_pay_code_that_was_never_issued_is_refused(api, world, cashier, loaded_shopper):
    token, card_id = loaded_shopper
    issued = pay_code(api, token).json["code"]
    never = f"{(int(issued) + 1) % 10**12:012d}"

    response = sell(api, world, cashier, {"pay_code": never}, 450)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "pay_code_invalid"
    assert balance(api, token, card_id) == 3000


def test_a_pay_code_can_name_another_card_of_ones_own(
    api, world, cashier, loaded_shopper, gift_of_shopper
):
    token, digital_id = loaded_shopper
    gift_id, _ = gift_of_shopper
    world.load(gift_id, 1000, cashier)

    issued = pay_code(api, token, gift_id)
    sale = sell(api, world, cashier, {"pay_code": issued.json["code"]}, 450)

    assert issued.status_code == 201
    assert issued.json["card_id"] == gift_id
    assert sale.status_code == 201
    assert balance(api, token, gift_id) == GIFT_LOAD + 550
    assert balance(api, token, digital_id) == 3000


def test_a_pay_code_for_another_shoppers_card_is_not_issued(api, db, shopper, other_shopper):
    token, _ = shopper
    _, other_card = other_shopper

    response = pay_code(api, token, other_card)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "card_not_found"
    assert db.scalar(select(func.count()).select_from(PayCode)) == 0


def test_a_pay_code_for_a_frozen_card_cannot_be_issued(api, db, loaded_shopper):
    token, card_id = loaded_shopper
    assert report_lost(api, token, card_id).status_code == 200

    response = pay_code(api, token, card_id)

    assert response.status_code == 409
    assert response.json["error"]["code"] == "card_frozen"
    assert db.scalar(select(func.count()).select_from(PayCode)) == 0


def test_a_pay_code_issued_before_the_card_was_lost_cannot_pay(
    api, db, world, cashier, loaded_shopper
):
    token, card_id = loaded_shopper
    code = pay_code(api, token).json["code"]
    replacement_id = report_lost(api, token, card_id).json["replacement_card"]["id"]

    response = sell(api, world, cashier, {"pay_code": code}, 450)

    assert response.status_code == 409
    assert response.json["error"]["code"] == "card_frozen"
    assert balance(api, token, replacement_id) == 3000
    assert count_sales(db) == 0


# --- activity -----------------------------------------------------------------------------


def activity(api, token, card_id, **query):
    return api.get(f"/v1/cards/{card_id}/activity", token=token, query_string=query)


def test_activity_lists_what_moved_the_balance_newest_first(api, world, cashier, shopper):
    token, card_id = shopper
    for amount in (500, 600, 700):
        world.load(card_id, amount, cashier)
    code = pay_code(api, token).json["code"]
    assert sell(api, world, cashier, {"pay_code": code}, 450).status_code == 201

    response = activity(api, token, card_id)

    assert response.status_code == 200
    items = response.json["items"]
    assert [item["amount"] for item in items] == [usd(-450), usd(700), usd(600), usd(500)]
    assert [item["kind"] for item in items] == ["sale", "top_up", "top_up", "top_up"]
    assert all(item["channel"] == "pos" for item in items)
    ids = [item["id"] for item in items]
    assert ids == sorted(ids, reverse=True)
    assert response.json["next_cursor"] is None


def test_activity_pages_walk_every_item_exactly_once(api, world, cashier, shopper):
    token, card_id = shopper
    amounts = [500, 600, 700, 800, 900, 1000, 1100]
    for amount in amounts:
        world.load(card_id, amount, cashier)

    seen, pages, cursor = [], [], None
    while True:
        query = {"limit": 3} if cursor is None else {"limit": 3, "cursor": cursor}
        response = activity(api, token, card_id, **query)
        assert response.status_code == 200
        pages.append(len(response.json["items"]))
        seen += response.json["items"]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "the cursor does not advance"

    assert pages == [3, 3, 1]
    assert [item["amount"]["amount"] for item in seen] == amounts[::-1]
    assert len({item["id"] for item in seen}) == len(amounts)
    everything = activity(api, token, card_id, limit=100).json["items"]
    assert [item["id"] for item in seen] == [item["id"] for item in everything]


def test_activity_of_an_exact_number_of_pages_ends_with_no_cursor(api, world, cashier, shopper):
    token, card_id = shopper
    for amount in (500, 600):
        world.load(card_id, amount, cashier)

    first = activity(api, token, card_id, limit=2)

    assert len(first.json["items"]) == 2
    assert first.json["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["abc", "-1", "1.5", ""])
def test_a_bad_activity_cursor_is_refused(api, shopper, cursor):
    token, card_id = shopper

    response = activity(api, token, card_id, cursor=cursor)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"


@pytest.mark.parametrize("limit", [0, 101, "many"])
def test_an_activity_limit_outside_1_to_100_is_refused(api, shopper, limit):
    token, card_id = shopper

    response = activity(api, token, card_id, limit=limit)

    assert response.status_code == 422
    assert response.json["error"]["code"] == "validation_error"


def test_another_shoppers_card_activity_is_not_found(api, world, cashier, shopper, other_shopper):
    token, _ = shopper
    _, other_card = other_shopper
    world.load(other_card, 500, cashier)

    response = activity(api, token, other_card)

    assert response.status_code == 404
    assert response.json["error"]["code"] == "card_not_found"
