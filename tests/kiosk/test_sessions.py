"""Kiosk sessions: taps close together are one session; a card joins it to its shopper."""

from __future__ import annotations

from app.kiosk.models import KioskSession, KioskTap


def test_taps_within_the_idle_time_share_a_session_and_a_longer_pause_starts_another(
    tap, shop, app, db
):
    idle = app.config["KIOSK_SESSION_IDLE_S"]
    first = tap.product("LATTE")["tap"]["session_id"]
    second = tap.product("MUFFIN", after_s=idle)["tap"]["session_id"]
    third = tap.product("LATTE", after_s=idle + 1)["tap"]["session_id"]
    assert first == second != third
    ended = db.get(KioskSession, first)
    assert ended.ended_at is not None
    assert db.get(KioskSession, third).ended_at is None


def test_a_card_tap_joins_the_session_and_later_taps_carry_the_shopper(tap, shop, db):
    before = tap.product("LATTE")
    joined = tap.card(shop.card.number)
    after = tap.product("MUFFIN")
    session_id = before["tap"]["session_id"]
    assert joined["tap"]["session_id"] == after["tap"]["session_id"] == session_id
    assert db.get(KioskSession, session_id).customer_id == shop.customer["id"]
    assert db.get(KioskTap, before["tap"]["id"]).customer_id is None
    assert db.get(KioskTap, after["tap"]["id"]).customer_id == shop.customer["id"]
    assert after["screen"]["shopper"] == {"first_name": "Ada", "stars": 0}


def test_another_shoppers_card_starts_a_session_of_their_own(tap, shop, world, db):
    from app.cards.models import Card

    tap.card(shop.card.number)
    _, other = world.shopper(name="Grace")
    other_card = db.get(Card, other["cards"][0]["id"])
    first = tap.product("LATTE")["tap"]["session_id"]
    second = tap.card(other_card.number)
    assert second["tap"]["session_id"] != first
    assert second["screen"]["shopper"]["first_name"] == "Grace"
    assert db.get(KioskSession, first).ended_at is not None


def test_the_idle_time_is_configurable(tap, shop, app):
    app.config["KIOSK_SESSION_IDLE_S"] = 10
    try:
        first = tap.product("LATTE")["tap"]["session_id"]
        assert tap.product("LATTE", after_s=11)["tap"]["session_id"] != first
    finally:
        app.config["KIOSK_SESSION_IDLE_S"] = 90
