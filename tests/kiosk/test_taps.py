"""What a tapped tag is, and what the kiosk's screen is told about it."""

from __future__ import annotations

from sqlalchemy import func, select

from app.cards.services import bind_nfc, issue_batch
from app.catalog.models import Product
from app.events.models import OutboxEntry
from app.kiosk.models import KioskSession, KioskTap
from app.sales.models import Sale


def taps(db) -> int:
    return db.scalar(select(func.count()).select_from(KioskTap))


def test_a_product_uri_on_any_host_shows_the_product_with_its_price_and_stock(tap, shop):
    answer = tap(uris=["https://elsewhere.example/p/LATTE"])
    assert answer["tap"]["kind"] == "product"
    assert answer["tap"]["product_id"] == shop.latte.id
    screen = answer["screen"]
    assert screen["view"] == "product"
    assert screen["message"] is None
    assert screen["shopper"] is None
    product = screen["product"]
    assert (product["sku"], product["name"], product["category"]) == ("LATTE", "Caffe Latte",
                                                                      "coffee")  # fmt: skip
    assert product["price"] == {"amount": 450, "currency": "USD"}
    assert product["list_price"] == {"amount": 450, "currency": "USD"}
    assert (product["in_stock"], product["sold_here"]) == (True, True)
    assert product["image_url"].startswith("/")
    assert product["variants"] == []


def test_a_product_tags_uid_alone_names_its_product(tap, shop):
    answer = tap(uid="04:a1:b2:c3:d4:e5:f6")
    assert answer["tap"]["kind"] == "product"
    assert answer["screen"]["product"]["id"] == shop.latte.id


def test_a_product_sold_here_but_run_out_says_out_of_stock(tap, shop):
    product = tap.product("MUFFIN")["screen"]["product"]
    assert (product["sold_here"], product["in_stock"]) == (True, False)


def test_another_stores_product_is_shown_as_not_sold_here(tap, shop):
    answer = tap.product("BEANS")
    assert answer["tap"]["kind"] == "product"
    screen = answer["screen"]
    assert screen["view"] == "product"
    assert screen["product"]["sold_here"] is False
    assert screen["product"]["in_stock"] is False
    assert screen["message"] == {"code": "not_sold_here"}


def test_a_sign_shows_its_category_with_the_products_this_store_sells(tap, shop):
    answer = tap.sign("Coffee")
    assert answer["tap"]["kind"] == "sign"
    assert answer["tap"]["category"] == "coffee"
    screen = answer["screen"]
    assert screen["view"] == "category"
    assert screen["category"]["name"] == "coffee"
    assert [p["sku"] for p in screen["category"]["products"]] == ["LATTE"]  # not BEANS


def test_a_card_number_in_a_text_record_joins_the_shopper_by_first_name_and_stars(tap, shop):
    answer = tap.card(shop.card.number)
    assert answer["tap"]["kind"] == "card"
    screen = answer["screen"]
    assert screen["view"] == "shopper"
    assert screen["shopper"] == {"first_name": "Ada", "stars": 0}
    assert "Lovelace" not in str(screen)
    assert shop.card.number not in str(screen)


def test_a_card_bound_by_its_nfc_uid_joins_the_shopper(tap, shop, db):
    bind_nfc(db, shop.card, "04112233445566")
    answer = tap(uid="04112233445566")
    assert answer["tap"]["kind"] == "card"
    assert answer["screen"]["shopper"]["first_name"] == "Ada"


def test_the_uri_wins_over_the_uid_and_the_card_text(tap, shop, db):
    bind_nfc(db, shop.card, "04112233445566")
    answer = tap(uid="04112233445566", uris=["https://x.example/p/MUFFIN"],
                 texts=[shop.card.number])  # fmt: skip
    assert answer["tap"]["product_id"] == shop.muffin.id


def test_an_unknown_tag_is_unknown_and_recorded(tap, shop, db):
    answer = tap(uid="04FFFFFFFFFFFF")
    assert answer["tap"]["kind"] == "unknown"
    assert answer["screen"]["view"] == "unknown"
    assert answer["screen"]["message"] == {"code": "unknown_tag"}
    assert answer["screen"]["product"] is None
    assert taps(db) == 1


def test_a_uri_naming_an_unknown_sku_or_category_is_unknown(tap, shop):
    assert tap.product("NOPE")["screen"]["message"] == {"code": "unknown_tag"}
    assert tap.sign("nothing")["screen"]["message"] == {"code": "unknown_tag"}
    assert tap(uris=["https://x.example/about"])["tap"]["kind"] == "unknown"


def test_a_garbled_ndef_message_says_the_tag_is_unreadable(tap, shop):
    answer = tap(uid="04EEEEEEEEEEEE", unreadable=True)
    assert answer["tap"]["kind"] == "unknown"
    assert answer["screen"]["message"] == {"code": "unreadable_tag"}


def test_a_garbled_tag_whose_uid_is_known_still_shows_its_product(tap, shop):
    answer = tap(uid="04A1B2C3D4E5F6", unreadable=True)
    assert answer["screen"]["product"]["sku"] == "LATTE"


def test_a_frozen_card_is_refused_and_joins_no_one(tap, shop, db):
    shop.card.status = "frozen"
    db.flush()
    answer = tap.card(shop.card.number)
    assert answer["tap"]["kind"] == "refused"
    screen = answer["screen"]
    assert (screen["view"], screen["message"]) == ("refused", {"code": "card_frozen"})
    assert screen["shopper"] is None
    assert db.get(KioskSession, answer["tap"]["session_id"]).customer_id is None


def gift_card(app, world, db):
    with app.app_context():
        [(gift, _code)] = issue_batch(db, staff_id=world.staff("admin").id, size=1)
    return gift


def test_a_gift_card_with_no_shopper_is_refused_as_not_registered(tap, shop, world, db, app):
    _, _, cashier = world.till(shop.store)
    gift = gift_card(app, world, db)
    world.sell_gift_card(gift.number, 1_000, cashier)
    answer = tap.card(gift.number)
    assert answer["tap"]["kind"] == "refused"
    assert answer["screen"]["message"] == {"code": "card_not_registered"}
    assert "registered" in answer["tap"]["detail"]


def test_a_gift_card_never_sold_is_refused_as_frozen(tap, shop, world, db, app):
    gift = gift_card(app, world, db)
    assert tap.card(gift.number)["screen"]["message"] == {"code": "card_frozen"}


def test_a_replayed_tap_is_recorded_once_and_answered_the_same(tap, shop, db):
    first = tap.product("LATTE", ref="tap-1")
    events = db.scalar(select(func.count()).select_from(OutboxEntry))
    assert events >= 1
    again = tap.replay()
    assert again == first
    assert taps(db) == 1
    assert db.scalar(select(func.count()).select_from(OutboxEntry)) == events  # no second screen


def test_a_tap_replayed_under_another_key_is_still_the_same_tap(tap, shop, db):
    first = tap.product("LATTE", ref="tap-2")
    again = tap.replay(key="another-key")
    assert again["tap"] == first["tap"]
    assert again["screen"]["product"] == first["screen"]["product"]
    assert taps(db) == 1


def test_a_clock_ahead_of_the_servers_is_taken_as_now(tap, shop, db):
    from datetime import UTC, datetime

    answer = tap.product("LATTE", after_s=3 * 3600)
    recorded = db.get(KioskTap, answer["tap"]["id"])
    assert recorded.tapped_at <= datetime.now(UTC)


def test_variants_share_a_parent_sku_and_list_their_prices(tap, shop, world, db):
    from app.catalog.services import set_in_stock

    grande = world.product(sku="LATTE-G", price=495, name="Caffe Latte Grande",
                           extra={"variant_of": "LATTE"})  # fmt: skip
    venti = world.product(sku="LATTE-V", price=545, name="Caffe Latte Venti",
                          extra={"variant_of": "LATTE"})  # fmt: skip
    set_in_stock(db, grande, shop.store.id, True)
    set_in_stock(db, venti, shop.store.id, False)
    for sku in ("LATTE", "LATTE-V"):
        variants = tap.product(sku)["screen"]["product"]["variants"]
        assert variants == [
            {"sku": "LATTE", "name": "Caffe Latte", "price": {"amount": 450, "currency": "USD"},
             "in_stock": True},
            {"sku": "LATTE-G", "name": "Caffe Latte Grande",
             "price": {"amount": 495, "currency": "USD"}, "in_stock": True},
            {"sku": "LATTE-V", "name": "Caffe Latte Venti",
             "price": {"amount": 545, "currency": "USD"}, "in_stock": False},
        ]  # fmt: skip


def test_only_a_kiosk_may_report_taps(api, shop, world):
    store, pos_secret = world.device(shop.store, "pos")
    body = {"tap_ref": "r", "tapped_at": "2026-12-05T10:00:00Z", "uris": []}
    response = api.post("/v1/kiosk/taps", token=pos_secret, json=body)
    assert response.status_code == 403
    response = api.post("/v1/kiosk/taps", token=shop.shopper, json=body)
    assert response.status_code == 403


def test_suggestions_come_from_what_was_bought_and_tapped_together(tap, shop, world, db):
    from app.catalog.services import set_in_stock

    scone = world.product(sku="SCONE", price=275, name="Scone", category="bakery")
    set_in_stock(db, scone, shop.store.id, True)
    _, _, cashier = world.till(shop.store)
    for skus in (["LATTE", "MUFFIN"], ["LATTE", "MUFFIN"], ["LATTE", "SCONE"]):
        sale = world.api.post("/v1/sales", token=cashier, json={
            "lines": [{"sku": sku, "quantity": 1} for sku in skus],
            "tenders": [{"type": "cash", "amount": {"amount": sum(
                {"LATTE": 450, "MUFFIN": 300, "SCONE": 275}[s] for s in skus),
                "currency": "USD"}}]})  # fmt: skip
        assert sale.status_code == 201, sale.json
    assert db.scalar(select(func.count()).select_from(Sale)) == 3
    suggestions = tap.product("LATTE")["screen"]["suggestions"]
    assert [(s["product"]["sku"], s["reason"]) for s in suggestions] == [
        ("MUFFIN", {"kind": "bought_with", "product_name": "Caffe Latte"}),
        ("SCONE", {"kind": "bought_with", "product_name": "Caffe Latte"}),
    ]
    # Tapped in the session already: not suggested again.
    after_muffin = tap.product("MUFFIN")["screen"]["suggestions"]
    assert "LATTE" not in [s["product"]["sku"] for s in after_muffin]
    assert db.get(Product, shop.elsewhere.id).sku not in str(after_muffin)
