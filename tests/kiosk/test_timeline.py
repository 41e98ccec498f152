"""The shopper's timeline: purchases, refunds, top-ups and kiosk taps, newest first."""

from __future__ import annotations


def usd(amount: int) -> dict:
    return {"amount": amount, "currency": "USD"}


def test_the_timeline_lists_everything_newest_first_and_pages_through_it(api, shop, world, tap):
    tap.product("LATTE")
    tap.card(shop.card.number)
    tap.product("MUFFIN")
    tap(uid="04FFFFFFFFFFFF")  # unknown: not the shopper's story
    _, _, cashier = world.till(shop.store)
    world.load(shop.card.id, 2_000, cashier)
    sale = api.post("/v1/sales", token=cashier, json={
        "customer": {"card_number": shop.card.number},
        "lines": [{"sku": "LATTE", "quantity": 2}],
        "tenders": [{"type": "card_balance", "amount": usd(900)}]})  # fmt: skip
    assert sale.status_code == 201, sale.json
    refund = api.post(f"/v1/sales/{sale.json['id']}/refunds", token=cashier,
                      json={"lines": [{"sku": "LATTE", "quantity": 1}]})  # fmt: skip
    assert refund.status_code == 201, refund.json

    whole = api.get("/v1/me/timeline", token=shop.shopper)
    assert whole.status_code == 200, whole.json
    items = whole.json["items"]
    assert [(i["kind"], i.get("tap_kind"), i["what"]) for i in items] == [
        ("refund", None, f"Refund of purchase {sale.json['id']}"),
        ("purchase", None, "Caffe Latte"),
        ("top_up", None, "Top-up"),
        ("kiosk_tap", "product", "Blueberry Muffin"),
        ("kiosk_tap", "card", "Loyalty card"),
    ]
    assert items[1]["amount"] == usd(900)
    assert items[1]["store"] == {"id": shop.store.id, "name": "Harbour St"}
    assert items[3]["channel"] == "kiosk"
    assert whole.json["next_cursor"] is None
    assert [i["at"] for i in items] == sorted((i["at"] for i in items), reverse=True)

    paged, cursor = [], None
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.get("/v1/me/timeline", token=shop.shopper, query_string=query).json
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == items


def test_the_timeline_shows_only_the_shoppers_own(api, shop, world, tap):
    tap.card(shop.card.number)
    tap.product("LATTE")
    other, _ = world.shopper(name="Grace")
    assert api.get("/v1/me/timeline", token=other).json["items"] == []


def test_a_cursor_not_given_out_is_refused(api, shop):
    response = api.get("/v1/me/timeline", token=shop.shopper, query_string={"cursor": "12.9.1"})
    assert (response.status_code, response.json["error"]["code"]) == (422, "validation_error")
