"""A store with a kiosk, products it sells and one it does not, a shopper with a card."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from app.cards.models import Card
from app.catalog.services import set_in_stock

# A real server with its event hub, for the tests of the kiosk's events.
from tests.events.conftest import hub_here, live, live_config  # noqa: F401


@dataclass
class Shop:
    store: object
    other_store: object
    kiosk: object
    secret: str
    latte: object
    muffin: object
    elsewhere: object
    shopper: str
    customer: dict
    card: Card


class Tapper:
    """Taps tags on the kiosk through the API, the kiosk's clock starting at ``start``."""

    def __init__(self, api, secret: str, start: datetime):
        self.api, self.secret, self.clock = api, secret, start

    def __call__(self, *, uid=None, uris=(), texts=(), unreadable=False, after_s=5, ref=None,
                 expect=201, key=None):  # fmt: skip
        self.clock += timedelta(seconds=after_s)
        ref = ref or str(uuid.uuid4())
        body = {"tap_ref": ref, "tapped_at": self.clock.isoformat(), "uid": uid,
                "uris": list(uris), "texts": list(texts), "unreadable": unreadable}  # fmt: skip
        self.last = body
        return self.send(body, key or ref, expect)

    def send(self, body: dict, key: str, expect: int = 201) -> dict:
        response = self.api.post("/v1/kiosk/taps", token=self.secret, json=body, key=key)
        assert response.status_code == expect, response.json
        return response.json

    def replay(self, key: str | None = None) -> dict:
        """The last tap sent again, as a kiosk does when it never got the answer."""
        return self.send(self.last, key or self.last["tap_ref"])

    def product(self, sku: str, **kw):
        return self(uris=[f"https://shop.example/p/{sku}"], **kw)

    def sign(self, category: str, **kw):
        return self(uris=[f"https://shop.example/c/{category}"], **kw)

    def card(self, number: str, **kw):
        return self(texts=[number], **kw)


@pytest.fixture
def shop(world, db) -> Shop:
    store, other = world.store(name="Harbour St"), world.store(name="Hill Rd")
    kiosk, secret = world.device(store, "kiosk")
    latte = world.product(sku="LATTE", price=450, name="Caffe Latte", category="coffee",
                          nfc_tag_ids=["04A1B2C3D4E5F6"])  # fmt: skip
    muffin = world.product(sku="MUFFIN", price=300, name="Blueberry Muffin", category="bakery")
    elsewhere = world.product(sku="BEANS", price=1_200, name="House Beans", category="coffee")
    set_in_stock(db, latte, store.id, True)
    set_in_stock(db, muffin, store.id, False)
    set_in_stock(db, elsewhere, other.id, True)
    token, me = world.shopper(name="Ada Lovelace")
    card = db.get(Card, me["cards"][0]["id"])
    return Shop(store, other, kiosk, secret, latte, muffin, elsewhere, token, me, card)


@pytest.fixture
def tap(api, shop) -> Tapper:
    return Tapper(api, shop.secret, datetime.now(UTC) - timedelta(minutes=30))
