"""Offline allowances through real HTTP: card money set aside on the ledger for one till,
signed by the server; offline sales replayed against it; forged, expired and spent
allowances refused and recorded; releases giving back what was not used.

Ledger amounts are credits: a card (a liability) and its hold account grow upwards.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.cards.models import Card
from app.core.db import database
from app.events.models import OutboxEntry
from app.ledger import services as ledger
from app.ledger.models import LedgerTransaction
from app.offline.models import OfflineAllowance, OfflineRefusal
from app.sales.models import Sale
from tests.conftest import Api, World, sign_in_tills
from tests.snapshot import snapshot

PRICE = 450


def usd(amount: int) -> dict:
    return {"amount": amount, "currency": "USD"}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Till:
    device_id: int
    token: str


@dataclass(frozen=True)
class Holder:
    token: str
    card_id: int
    number: str
    account_id: int


def make_till(world) -> Till:
    _store, device, token = world.till()
    return Till(device.id, token)


@pytest.fixture
def till(world):
    return make_till(world)


@pytest.fixture
def other_till(world):
    return make_till(world)


@pytest.fixture
def latte(world):
    return world.product(sku="OFF-LATTE", price=PRICE, name="Latte")


def new_holder(world, db, till, loaded=5_000, name="Ada Lovelace") -> Holder:
    token, me = world.shopper(name)
    card = db.get(Card, me["cards"][0]["id"])
    if loaded:
        world.load(card.id, loaded, till.token)
    return Holder(token, card.id, card.number, card.account_id)


@pytest.fixture
def holder(world, db, till):
    """A shopper whose card holds 50.00."""
    return new_holder(world, db, till)


def ask(api, till, number, amount=None, **kw):
    body = {"card": {"card_number": number}}
    if amount is not None:
        body["amount"] = usd(amount)
    return api.post("/v1/pos/offline-allowances", token=till.token, json=body, **kw)


def granted(api, till, number, amount=None) -> dict:
    response = ask(api, till, number, amount)
    assert response.status_code == 201, response.json
    return response.json


def replay(api, till, token, *, lattes=1, card_part=None, made_at=None, customer=None, **kw):
    total = PRICE * lattes
    card_part = total if card_part is None else card_part
    tenders = [{"type": "card_balance", "amount": usd(card_part)}] if card_part else []
    if total - card_part:
        tenders.append({"type": "cash", "amount": usd(total - card_part)})
    body = {
        "lines": [{"sku": "OFF-LATTE", "quantity": lattes}],
        "tenders": tenders,
        "offline": {"made_at": iso(made_at or now()), "allowance": token},
    }
    if customer is not None:
        body["customer"] = customer
    if not (kw.get("refusal_writes") and api.db is not None):
        return api.post("/v1/sales", token=till.token, json=body, **kw)
    # A refused replay writes its refusal down, and nothing else.
    before = snapshot(api.db, leave_out=RECORDED)
    response = api.post("/v1/sales", token=till.token, json=body, **kw)
    if 400 <= response.status_code < 500:
        assert snapshot(api.db, leave_out=RECORDED) == before, response.json
    return response


#: What a refused offline sale writes: its refusal (and no other table).
RECORDED = frozenset({"offline_refusals"})


def card_of(api, holder) -> dict:
    response = api.get(f"/v1/cards/{holder.card_id}", token=holder.token)
    assert response.status_code == 200, response.json
    return response.json


def refusals(db) -> list[OfflineRefusal]:
    return list(db.scalars(select(OfflineRefusal).order_by(OfflineRefusal.id)))


# --- granting ---------------------------------------------------------------------------------


def test_an_allowance_moves_the_money_from_the_card_to_its_hold(api, db, till, holder):
    allowance = granted(api, till, holder.number)
    assert allowance["amount"] == usd(2_500)  # OMNICARD_OFFLINE_ALLOWANCE_MAX_MINOR
    assert allowance["used"] == usd(0)
    assert allowance["card_id"] == holder.card_id
    assert allowance["device_id"] == till.device_id
    assert allowance["status"] == "live"
    assert allowance["last4"] == holder.number[-4:]
    assert allowance["holder"] == {"first_name": "Ada", "stars": 0}
    card = card_of(api, holder)
    assert card["balance"] == usd(2_500)
    assert card["held"] == usd(2_500)
    hold = db.get(Card, holder.card_id).held_account_id
    assert ledger.balance_of(db, hold) == 2_500
    assert ledger.account_by_code(db, f"card:{holder.card_id}:held").id == hold
    kinds = db.scalars(select(LedgerTransaction.kind).order_by(LedgerTransaction.id)).all()
    assert kinds[-1] == "offline_hold"


def test_the_shoppers_home_screen_shows_each_card_as_the_card_itself_does(api, till, holder):
    """``GET /v1/me`` reads every card with its balances in one query: the same figures."""
    granted(api, till, holder.number)
    me = api.get("/v1/me", token=holder.token)
    assert me.status_code == 200, me.json
    shown = {card["id"]: card for card in me.json["cards"]}
    assert holder.card_id in shown
    for card_id, card in shown.items():
        alone = api.get(f"/v1/cards/{card_id}", token=holder.token).json
        assert (card["balance"], card["held"]) == (alone["balance"], alone["held"])
    assert shown[holder.card_id]["held"] == usd(2_500)


def test_an_allowance_expires_after_its_time_to_live(api, app, till, holder):
    before = now()
    allowance = granted(api, till, holder.number)
    expires = datetime.fromisoformat(allowance["expires_at"])
    ttl = timedelta(seconds=app.config["OFFLINE_ALLOWANCE_TTL_S"])
    assert before + ttl <= expires <= now() + ttl


@pytest.mark.parametrize(("loaded", "asked", "held"), [
    (5_000, 1_000, 1_000),  # what was asked
    (5_000, 9_000, 2_500),  # never more than the most
    (700, None, 700),       # never more than the card has
])  # fmt: skip
def test_an_allowance_holds_what_was_asked_within_the_most_and_the_balance(
    api, world, db, till, loaded, asked, held
):
    holder = new_holder(world, db, till, loaded=loaded)
    assert granted(api, till, holder.number, asked)["amount"] == usd(held)
    assert card_of(api, holder)["balance"] == usd(loaded - held)


def test_a_card_with_nothing_on_it_gets_no_allowance(api, world, db, till):
    holder = new_holder(world, db, till, loaded=0)
    response = ask(api, till, holder.number)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "insufficient_funds"


def test_asking_again_at_the_same_till_answers_the_live_allowance(api, db, till, holder):
    first = granted(api, till, holder.number, 1_000)
    again = granted(api, till, holder.number, 2_000)
    assert again == first
    assert card_of(api, holder)["balance"] == usd(4_000)
    assert db.scalar(select(func.count()).select_from(OfflineAllowance)) == 1


def test_each_till_has_its_own_allowance_of_the_card(api, world, till, other_till, holder):
    first = granted(api, till, holder.number, 2_000)
    second = granted(api, other_till, holder.number, 2_500)
    assert first["id"] != second["id"]
    assert card_of(api, holder)["balance"] == usd(500)
    assert card_of(api, holder)["held"] == usd(4_500)
    third = granted(api, make_till(world), holder.number, 2_500)["amount"]
    assert third == usd(500)  # what was left


def test_the_match_lets_a_till_recognise_the_card_without_its_number(api, db, till, holder):
    card = db.get(Card, holder.card_id)
    card.nfc_uid = "04A2B3C4D5E6F7"
    db.flush()
    allowance = granted(api, till, holder.number)
    salt = allowance["match"]["salt"]
    assert len(salt) >= 32
    mac = hmac.new(salt.encode(), holder.number.encode(), hashlib.sha256).hexdigest()
    assert allowance["match"]["card_number_hmac"] == mac
    uid_mac = hmac.new(salt.encode(), b"04A2B3C4D5E6F7", hashlib.sha256).hexdigest()
    assert allowance["match"]["nfc_uid_hmac"] == uid_mac
    assert holder.number not in str(allowance)


def test_the_reserved_money_cannot_be_spent_online(api, till, other_till, holder, latte):
    """The issue's check: what an allowance holds is gone from the card's online balance."""
    granted(api, till, holder.number, 2_500)
    spend = {
        "customer": {"card_number": holder.number},
        "lines": [{"sku": "OFF-LATTE", "quantity": 6}],  # 27.00 of the 50.00: 25.00 is held
        "tenders": [{"type": "card_balance", "amount": usd(6 * PRICE)}],
    }
    for at in (till, other_till):
        refused = api.post("/v1/sales", token=at.token, json=spend)  # Api.call: nothing changed
        assert refused.status_code == 409, refused.json
        assert refused.json["error"]["code"] == "insufficient_funds"
    spend["lines"][0]["quantity"] = 5  # 22.50: what is not held still pays
    spend["tenders"][0]["amount"] = usd(5 * PRICE)
    assert api.post("/v1/sales", token=other_till.token, json=spend).status_code == 201


# --- offline sales replayed -------------------------------------------------------------------


def test_an_offline_sale_takes_its_card_part_from_the_hold(api, db, till, holder, latte):
    allowance = granted(api, till, holder.number)
    made_at = now() - timedelta(minutes=5)
    sale = replay(api, till, allowance["token"], lattes=2, card_part=700, made_at=made_at)
    assert sale.status_code == 201, sale.json
    assert sale.json["card_id"] == holder.card_id
    assert sale.json["customer_id"] is not None  # the holder earns Stars
    assert sale.json["stars_earned"] > 0
    card = card_of(api, holder)
    assert card["balance"] == usd(2_500)  # the card itself is untouched
    assert card["held"] == usd(1_800)
    row = db.get(Sale, sale.json["id"])
    assert row.offline_made_at == made_at.replace(microsecond=made_at.microsecond)
    assert row.offline_allowance_id == allowance["id"]
    assert db.get(OfflineAllowance, allowance["id"]).used_minor == 700


def test_the_customer_may_name_the_allowances_card_and_no_other(
    api, world, db, till, holder, latte
):
    allowance = granted(api, till, holder.number)
    same = replay(api, till, allowance["token"], customer={"card_number": holder.number})
    assert same.status_code == 201, same.json
    stranger = new_holder(world, db, till, name="Bob")
    other = replay(
        api, till, allowance["token"], customer={"card_number": stranger.number},
        refusal_writes=True,
    )  # fmt: skip
    assert other.status_code == 422
    assert other.json["error"]["code"] == "allowance_invalid"


def test_replaying_one_offline_sale_twice_is_one_sale(api, db, till, holder, latte):
    allowance = granted(api, till, holder.number)
    made_at = now()
    first = replay(api, till, allowance["token"], made_at=made_at, key="offline-sale-7")
    again = replay(api, till, allowance["token"], made_at=made_at, key="offline-sale-7")
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert db.scalar(select(func.count()).select_from(Sale)) == 1
    assert card_of(api, holder)["held"] == usd(2_500 - PRICE)


def test_a_cash_offline_sale_needs_no_allowance(api, db, till, latte):
    response = api.post(
        "/v1/sales",
        token=till.token,
        json={"lines": [{"sku": "OFF-LATTE", "quantity": 1}],
              "tenders": [{"type": "cash", "amount": usd(PRICE)}],
              "offline": {"made_at": iso(now()), "allowance": None}},
    )  # fmt: skip
    assert response.status_code == 201, response.json
    assert db.get(Sale, response.json["id"]).offline_made_at is not None


def refused_and_recorded(db, response, code, before):
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == code
    recorded = refusals(db)
    assert len(recorded) == before + 1
    assert recorded[-1].reason == code
    assert recorded[-1].body["offline"]["made_at"]
    return recorded[-1]


def nothing_but_the_refusal_changed(db, holder, held, sales=0):
    assert ledger.balance_of(db, db.get(Card, holder.card_id).held_account_id) == held
    assert db.scalar(select(func.count()).select_from(Sale)) == sales


def test_a_card_balance_offline_sale_without_an_allowance_is_refused_unrecorded(
    api, db, till, holder, latte
):
    granted(api, till, holder.number)
    response = replay(api, till, None, customer={"card_number": holder.number})
    assert response.status_code == 422  # Api.call: nothing changed, not even a refusal row
    assert response.json["error"]["code"] == "allowance_required"


def forge(token: str) -> str:
    payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{payload}.{flipped}"


def test_a_forged_allowance_is_refused_and_recorded(api, db, app, till, holder, latte):
    allowance = granted(api, till, holder.number)
    response = replay(api, till, forge(allowance["token"]), refusal_writes=True)
    refusal = refused_and_recorded(db, response, "allowance_invalid", 0)
    assert refusal.device_id == till.device_id
    nothing_but_the_refusal_changed(db, holder, 2_500)


def test_an_allowance_with_a_raised_amount_is_refused(api, db, till, holder, latte):
    """A till that rewrites the payload (a bigger amount) breaks the signature."""
    import base64
    import json

    allowance = granted(api, till, holder.number, 500)
    payload, signature = allowance["token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["amount"] = 2_500
    raised = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = replay(api, till, f"{raised}.{signature}", lattes=2, refusal_writes=True)
    refused_and_recorded(db, response, "allowance_invalid", 0)
    nothing_but_the_refusal_changed(db, holder, 500)


@pytest.mark.parametrize("token", ["", "x", "a.b", "." * 3, "eyJ9.AAAA", "é.é"])
def test_junk_for_an_allowance_is_refused_and_recorded(api, db, till, holder, latte, token):
    granted(api, till, holder.number)
    response = replay(api, till, token, refusal_writes=True)
    if token == "":
        assert response.status_code == 422
        assert response.json["error"]["code"] == "validation_error"
        assert refusals(db) == []
        return
    refused_and_recorded(db, response, "allowance_invalid", 0)


def test_another_tills_allowance_is_refused(api, db, till, other_till, holder, latte):
    allowance = granted(api, till, holder.number)
    response = replay(api, other_till, allowance["token"], refusal_writes=True)
    refusal = refused_and_recorded(db, response, "allowance_invalid", 0)
    assert refusal.device_id == other_till.device_id
    nothing_but_the_refusal_changed(db, holder, 2_500)


def test_a_sale_made_after_the_allowance_expired_is_refused(
    api, app, db, monkeypatch, till, holder, latte
):
    monkeypatch.setitem(app.config, "OFFLINE_ALLOWANCE_TTL_S", 5)
    allowance = granted(api, till, holder.number)
    expires = datetime.fromisoformat(allowance["expires_at"])
    ok = replay(api, till, allowance["token"], made_at=expires)
    assert ok.status_code == 201, ok.json
    late = replay(api, till, allowance["token"], made_at=expires + timedelta(seconds=1),
                  refusal_writes=True)  # fmt: skip
    refused_and_recorded(db, late, "allowance_expired", 0)
    nothing_but_the_refusal_changed(db, holder, 2_500 - PRICE, sales=1)


def test_a_sale_made_in_the_future_is_refused(api, db, till, holder, latte):
    allowance = granted(api, till, holder.number)
    ahead = replay(api, till, allowance["token"], made_at=now() + timedelta(minutes=1, seconds=5),
                   refusal_writes=True)  # fmt: skip
    refused_and_recorded(db, ahead, "allowance_expired", 0)
    skewed = replay(api, till, allowance["token"], made_at=now() + timedelta(seconds=30))
    assert skewed.status_code == 201, skewed.json  # a till's clock a little ahead


def test_a_sale_beyond_what_is_left_of_the_allowance_is_refused(api, db, till, holder, latte):
    allowance = granted(api, till, holder.number, 1_000)
    assert replay(api, till, allowance["token"], lattes=2).status_code == 201  # 9.00
    over = replay(api, till, allowance["token"], lattes=1, refusal_writes=True)  # 4.50 > 1.00
    refused = refused_and_recorded(db, over, "allowance_exhausted", 0)
    assert refused.reason == "allowance_exhausted"
    assert over.json["error"]["details"]["left"] == 100
    nothing_but_the_refusal_changed(db, holder, 100, sales=1)
    split = replay(api, till, allowance["token"], lattes=1, card_part=100)  # the rest in cash
    assert split.status_code == 201, split.json
    assert card_of(api, holder)["held"] == usd(0)


# --- releasing --------------------------------------------------------------------------------


def release(api, till, allowance_id, **kw):
    return api.post(f"/v1/pos/offline-allowances/{allowance_id}/release", token=till.token, **kw)


def test_a_release_gives_back_what_no_sale_used(api, db, till, holder, latte):
    allowance = granted(api, till, holder.number)
    assert replay(api, till, allowance["token"]).status_code == 201
    released = release(api, till, allowance["id"])
    assert released.status_code == 200, released.json
    assert released.json["status"] == "released"
    assert released.json["released"] == usd(2_500 - PRICE)
    assert released.json["used"] == usd(PRICE)
    card = card_of(api, holder)
    assert card["balance"] == usd(5_000 - PRICE)
    assert card["held"] == usd(0)
    kinds = db.scalars(select(LedgerTransaction.kind).order_by(LedgerTransaction.id)).all()
    assert kinds[-1] == "offline_release"
    again = release(api, till, allowance["id"])  # gives back nothing more
    assert again.status_code == 200
    assert card_of(api, holder)["balance"] == usd(5_000 - PRICE)


def test_only_the_till_of_the_allowance_releases_it(api, till, other_till, holder):
    allowance = granted(api, till, holder.number)
    response = release(api, other_till, allowance["id"])
    assert response.status_code == 404
    assert response.json["error"]["code"] == "allowance_not_found"
    assert release(api, till, 999_999_999).status_code == 404


def test_after_a_release_a_sale_made_later_is_refused_and_one_made_before_counts(
    api, db, till, holder, latte
):
    allowance = granted(api, till, holder.number)
    before_release = now()
    assert release(api, till, allowance["id"]).status_code == 200
    later = replay(api, till, allowance["token"], made_at=now() + timedelta(seconds=1),
                   refusal_writes=True)  # fmt: skip
    refused_and_recorded(db, later, "allowance_expired", 0)
    late_replay = replay(api, till, allowance["token"], made_at=before_release)
    assert late_replay.status_code == 201, late_replay.json
    assert card_of(api, holder)["balance"] == usd(5_000 - PRICE)  # from the card, given back


def test_asking_after_a_release_sets_aside_a_new_allowance(api, till, holder):
    first = granted(api, till, holder.number, 1_000)
    release(api, till, first["id"])
    second = granted(api, till, holder.number, 1_000)
    assert second["id"] != first["id"]
    assert card_of(api, holder)["held"] == usd(1_000)


def test_an_expired_allowance_asked_again_is_released_and_replaced(
    api, app, monkeypatch, db, till, holder
):
    monkeypatch.setitem(app.config, "OFFLINE_ALLOWANCE_TTL_S", -1)
    first = granted(api, till, holder.number, 1_000)
    monkeypatch.setitem(app.config, "OFFLINE_ALLOWANCE_TTL_S", 3600)
    second = granted(api, till, holder.number, 1_500)
    assert second["id"] != first["id"]
    assert db.get(OfflineAllowance, first["id"]).status == "released"
    assert card_of(api, holder)["held"] == usd(1_500)
    assert card_of(api, holder)["balance"] == usd(3_500)


def test_a_card_reported_lost_gets_its_held_money_back_on_its_replacement(
    api, db, till, holder, latte
):
    allowance = granted(api, till, holder.number)
    lost = api.post(f"/v1/cards/{holder.card_id}/report-lost", token=holder.token)
    assert lost.status_code == 200, lost.json
    replacement = lost.json["replacement_card"]
    assert replacement["balance"] == usd(2_500)
    assert lost.json["lost_card"]["held"] == usd(2_500)
    # A sale made offline before the loss still takes from the hold.
    assert replay(api, till, allowance["token"]).status_code == 201
    assert release(api, till, allowance["id"]).status_code == 200
    me = api.get(f"/v1/cards/{replacement['id']}", token=holder.token).json
    assert me["balance"] == usd(5_000 - PRICE)


def release_command(app):
    return app.test_cli_runner().invoke(args=["pos", "release-allowances"])


def test_the_command_releases_allowances_a_day_past_their_expiry(
    api, app, db, monkeypatch, till, other_till, holder
):
    monkeypatch.setitem(app.config, "OFFLINE_ALLOWANCE_TTL_S", -25 * 3600)
    stale = granted(api, till, holder.number, 1_000)
    monkeypatch.setitem(app.config, "OFFLINE_ALLOWANCE_TTL_S", -23 * 3600)
    recent = granted(api, other_till, holder.number, 1_000)  # expired, but within the grace
    result = release_command(app)
    assert result.exit_code == 0, result.output
    assert f"allowance {stale['id']}: released 1000" in result.output
    assert db.get(OfflineAllowance, stale["id"]).status == "released"
    assert db.get(OfflineAllowance, recent["id"]).status == "live"
    assert card_of(api, holder)["held"] == usd(1_000)
    assert "0 allowance(s) released" in release_command(app).output


# --- on PostgreSQL, at once -------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    app: object
    api: Api
    tills: tuple[Till, ...]
    holder: Holder

    def client(self) -> Api:
        return Api(self.app.test_client())

    def session(self):
        return database(self.app).sessions()


@pytest.fixture
def live(app, committed) -> Live:
    api = Api(app.test_client())  # no ``db`` fixture: every request commits for real
    with database(app).sessions() as s:
        world = World(app, s, api)
        store = world.store()
        devices = [world.device(store, "pos") for _ in range(3)]
        cashiers = [world.staff("cashier", store=store, pin="1357") for _ in range(3)]
        world.product(sku="OFF-LATTE", price=PRICE, name="Latte")
        s.commit()
    tokens = sign_in_tills(api, devices, cashiers)
    tills = [Till(device.id, token) for (device, _), token in zip(devices, tokens, strict=True)]
    token, me = world.shopper("Ada Lovelace")  # through the API only: no session open here
    world.load(me["cards"][0]["id"], 3_000, tills[0].token)
    with database(app).sessions() as s:
        card = s.get(Card, me["cards"][0]["id"])
        holder = Holder(token, card.id, card.number, card.account_id)
    return Live(app, api, tuple(tills), holder)


def all_at_once(jobs):
    start = threading.Barrier(len(jobs))

    def run(job):
        start.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(run, jobs))


def held_and_balance(live) -> tuple[int, int]:
    with live.session() as s:
        card = s.get(Card, live.holder.card_id)
        held = ledger.balance_of(s, card.held_account_id) if card.held_account_id else 0
        return held, ledger.balance_of(s, card.account_id)


@pytest.mark.concurrent
def test_an_allowance_racing_an_online_sale_of_the_card_never_overdraws(live):
    holder, (first, second, _) = live.holder, live.tills
    spend = {
        "customer": {"card_number": holder.number},
        "lines": [{"sku": "OFF-LATTE", "quantity": 2}],
        "tenders": [{"type": "card_balance", "amount": usd(2 * PRICE)}],
    }
    for _ in range(3):  # 30.00: an allowance of 25.00 and two lattes cannot both fit
        sale, allowance = all_at_once([
            lambda: live.client().post("/v1/sales", token=second.token, json=spend),
            lambda: ask(live.client(), first, holder.number),
        ])  # fmt: skip
        # Whichever comes first, the card has something left to set aside: always granted.
        assert allowance.status_code == 201, allowance.json
        held, balance = held_and_balance(live)
        assert balance >= 0 and held >= 0
        assert held + balance + PRICE * 2 * (sale.status_code == 201) <= 3_000
        assert allowance.json["amount"]["amount"] == held
        release(live.api, first, allowance.json["id"])
    with live.session() as s:
        sold = s.scalar(select(func.count()).select_from(Sale))
    assert sold * 2 * PRICE + sum(held_and_balance(live)) == 3_000


@pytest.mark.concurrent
def test_two_tills_asking_for_one_cards_allowance_at_once_never_hold_more_than_it_has(live):
    holder = live.holder
    answers = all_at_once([lambda t=t: ask(live.client(), t, holder.number) for t in live.tills])
    amounts = [a.json["amount"]["amount"] for a in answers if a.status_code == 201]
    for answer in answers:
        assert answer.status_code in (201, 409), answer.json
    assert sum(amounts) == 3_000  # 25.00 to the first, 5.00 to the next, nothing for the last
    assert sorted(amounts) == [500, 2_500]
    assert held_and_balance(live) == (3_000, 0)


@pytest.mark.concurrent
def test_one_till_asking_twice_at_once_gets_one_allowance(live):
    holder, till = live.holder, live.tills[0]
    answers = all_at_once([lambda: ask(live.client(), till, holder.number) for _ in range(4)])
    assert all(a.status_code == 201 for a in answers), [a.json for a in answers]
    assert len({a.json["id"] for a in answers}) == 1
    assert held_and_balance(live) == (2_500, 500)


@pytest.mark.concurrent
def test_one_offline_sale_replayed_twice_at_once_is_one_sale(live):
    holder, till = live.holder, live.tills[0]
    allowance = granted(live.api, till, holder.number)
    made_at = now()
    answers = all_at_once([
        lambda: replay(live.client(), till, allowance["token"], made_at=made_at, key="replay-1")
        for _ in range(4)
    ])  # fmt: skip
    assert {a.status_code for a in answers} <= {201, 409}
    done = [a for a in answers if a.status_code == 201]
    for answer in answers:
        if answer.status_code == 409:  # still being carried out: the till retries
            assert answer.json["error"]["code"] == "request_in_progress"
    assert len({a.json["id"] for a in done}) == 1
    with live.session() as s:
        assert s.scalar(select(func.count()).select_from(Sale)) == 1
    assert held_and_balance(live) == (2_500 - PRICE, 500)


@pytest.mark.concurrent
def test_offline_sales_from_one_allowance_at_once_never_take_more_than_it_holds(live):
    holder, till = live.holder, live.tills[0]
    allowance = granted(live.api, till, holder.number, 1_000)
    answers = all_at_once([
        lambda: replay(live.client(), till, allowance["token"], refusal_writes=True)
        for _ in range(4)
    ])  # fmt: skip
    assert sorted(a.status_code for a in answers) == [201, 201, 422, 422]
    assert held_and_balance(live) == (1_000 - 2 * PRICE, 2_000)
    with live.session() as s:
        assert s.scalar(select(func.count()).select_from(OfflineRefusal)) == 2


def test_holds_and_releases_keep_the_ledger_verifying_and_tell_the_shopper(
    api, app, db, till, holder, latte
):
    allowance = granted(api, till, holder.number)
    assert replay(api, till, allowance["token"]).status_code == 201
    assert release(api, till, allowance["id"]).status_code == 200
    result = app.test_cli_runner().invoke(args=["ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "ledger OK" in result.output
    changed = [
        (event["payload"]["reason"], event["payload"]["balance"]["amount"])
        for entry in db.scalars(select(OutboxEntry).order_by(OutboxEntry.id))
        for event in entry.events
        if event["type"] == "card.balance_changed" and event["card_id"] == holder.card_id
    ]
    assert changed[-3:] == [
        ("offline_hold", 2_500),
        ("sale", 2_500),  # from the hold: the card's own balance is as it was
        ("offline_release", 5_000 - PRICE),
    ]


def test_a_receipt_counts_what_tills_hold_of_the_card_as_the_shoppers(api, till, holder, latte):
    """Held money is still the shopper's: the receipt's balance after is balance + held, for an
    online sale and for an offline one paid from the hold."""
    allowance = granted(api, till, holder.number)  # 25.00 of the 50.00 held
    online = api.post("/v1/sales", token=till.token, json={
        "customer": {"card_number": holder.number},
        "lines": [{"sku": "OFF-LATTE", "quantity": 1}],
        "tenders": [{"type": "card_balance", "amount": usd(PRICE)}],
    })  # fmt: skip
    assert online.status_code == 201, online.json
    offline = replay(api, till, allowance["token"])
    assert offline.status_code == 201, offline.json
    card = card_of(api, holder)
    owned = card["balance"]["amount"] + card["held"]["amount"]
    assert owned == 5_000 - 2 * PRICE
    for sale, after in ((online, 5_000 - PRICE), (offline, owned)):
        receipt = api.get(f"/v1/receipts/{sale.json['receipt']['id']}").json
        assert receipt["card"]["balance_after"] == usd(after)
