"""Suggestions on a real database: the counts kept as taps and sales are recorded, and what
``suggest`` answers from them."""

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from app.auth.principal import Principal
from app.cards.models import Card
from app.catalog.services import set_stores
from app.core.db import write_kept_now
from app.core.settings import settings
from app.core.types import utcnow
from app.kiosk import counts
from app.kiosk.models import ProductPairCount, ProductStoreCount
from app.kiosk.services import TapRead, picture_of, record_tap
from app.kiosk.suggestions import suggest
from app.sales.models import Sale
from app.sales.services import make_sale


class Shop:
    """Two stores (``here`` with a kiosk, ``there`` without), products, and the means to tap
    and sell them."""

    def __init__(self, world, db):
        self.world, self.db = world, db
        self.here, self.there = world.store(), world.store()
        self.kiosk, _ = world.device(self.here, "kiosk")
        self.tills = {}
        for store in (self.here, self.there):
            device, _ = world.device(store, "pos")
            cashier = world.staff("cashier", store=store)
            self.tills[store.id] = Principal(
                "cashier", staff_id=cashier.id, role="cashier", device_id=device.id,
                device_kind="pos", store_id=store.id,
            )  # fmt: skip
        self.p = {}
        self.clock = utcnow() - timedelta(days=2)

    def product(self, name, *, stores):
        product = self.world.product(name=name, price=300)
        set_stores(self.db, product, {store.id: True for store in stores})
        self.p[name] = product
        return product

    def taps(self, *names):
        """One kiosk session tapping ``names``, through the kiosk's tap service."""
        self.clock += timedelta(hours=1)
        for name in names:
            self.clock += timedelta(seconds=5)
            read = TapRead(
                tap_ref=uuid.uuid4().hex,
                tapped_at=self.clock,
                uris=(f"https://shop.example/p/{self.p[name].sku}",),
            )
            tap, _ = record_tap(self.db, self.kiosk, read, idle_s=settings().kiosk_session_idle_s)
            assert tap.kind == "product" and tap.product_id == self.p[name].id

    def sell(self, *names, store=None, card_number=None, quantity=1):
        store = store or self.here
        sale = make_sale(
            self.db,
            settings(),
            self.tills[store.id],
            presented={"card_number": card_number} if card_number else None,
            lines=[(self.p[n].sku, quantity) for n in names],
            tenders=[("cash", 300 * quantity * len(names))],
        ).sale
        write_kept_now(self.db)  # its lines, counted next in this same transaction
        counts.count_new_sales(self.db)  # as the kiosk does before it suggests
        return sale

    def suggest(self, name=None, session=(), customer_id=None, limit=4):
        found = suggest(
            self.db,
            store_id=self.here.id,
            product_id=self.p[name].id if name else None,
            session_product_ids=[self.p[n].id for n in session],
            customer_id=customer_id,
            limit=limit,
        )
        return [(f["product"]["name"], f["reason"]["kind"], f["reason"]["product_name"])
                for f in found]  # fmt: skip

    def pair(self, a, b):
        row = self.db.get(ProductPairCount, (self.p[a].id, self.p[b].id))
        return (row.bought, row.tapped) if row else None


@pytest.fixture
def shop(app, world, db):
    with app.app_context():
        yield make_shop(world, db)


def make_shop(world, db):
    shop = Shop(world, db)
    both = (shop.here, shop.there)
    for name in ("Mug", "Beans", "Filter", "Grinder", "Kettle", "Scale"):
        shop.product(name, stores=both)
    shop.product("Syrup", stores=(shop.there,))  # not sold here
    return shop


def card_of(db, customer):
    return db.scalar(select(Card.number).where(Card.customer_id == customer["id"]))


def fixed_history(shop):
    shop.sell("Mug", "Beans")
    shop.sell("Mug", "Beans")
    shop.sell("Mug", "Syrup", store=shop.there)
    shop.sell("Mug", "Grinder", store=shop.there)
    shop.sell("Grinder", store=shop.there, quantity=14)
    shop.taps("Mug", "Filter")
    shop.taps("Mug", "Filter", "Mug")


def test_a_fixed_history_gives_the_expected_suggestions_in_order(shop):
    fixed_history(shop)
    # Beans: bought with Mug twice, 3 x 2 x 2 = 12. Grinder: bought with Mug once (6), but
    # 15 sold elsewhere and never tapped here: x (1 + 15/20) = 10.5. Filter: tapped with Mug in
    # two sessions, 3 x 1 x 2 = 6, tapped here, sold nowhere. Syrup is not sold here.
    assert shop.suggest("Mug", session=["Mug"]) == [
        ("Beans", "bought_with", "Mug"),
        ("Grinder", "hidden_gem", "Mug"),
        ("Filter", "tapped_with", "Mug"),
    ]


def test_the_suggestion_carries_the_product_and_its_price(shop):
    fixed_history(shop)
    found = suggest(shop.db, store_id=shop.here.id, product_id=shop.p["Mug"].id, limit=1)
    beans = shop.p["Beans"]
    assert found == [{
        "product": {
            "id": beans.id, "sku": beans.sku, "name": "Beans", "image_url": picture_of(beans),
            "category": "coffee", "price": {"amount": 300, "currency": "USD"},
            "list_price": {"amount": 300, "currency": "USD"}, "in_stock": True,
        },
        "reason": {"kind": "bought_with", "product_name": "Mug"},
    }]  # fmt: skip


def test_what_the_session_has_is_not_suggested(shop):
    fixed_history(shop)
    names = [name for name, _, _ in shop.suggest("Mug", session=["Mug", "Beans"])]
    assert names == ["Grinder", "Filter"]


def test_a_sale_counts_each_pair_in_it_both_ways_and_the_units_per_store(shop):
    shop.sell("Kettle", "Scale", quantity=2)
    assert shop.pair("Kettle", "Scale") == (1, 0)
    assert shop.pair("Scale", "Kettle") == (1, 0)
    row = shop.db.get(ProductStoreCount, (shop.p["Kettle"].id, shop.here.id))
    assert (row.taps, row.sold) == (0, 2)
    assert shop.suggest("Kettle") == [("Scale", "bought_with", "Kettle")]


def test_taps_in_one_session_pair_once_however_often_they_are_tapped(shop):
    shop.taps("Kettle", "Scale", "Kettle", "Scale")
    assert shop.pair("Kettle", "Scale") == (0, 1)
    row = shop.db.get(ProductStoreCount, (shop.p["Kettle"].id, shop.here.id))
    assert (row.taps, row.sold) == (2, 0)
    assert shop.suggest("Scale") == [("Kettle", "tapped_with", "Scale")]


def test_a_shoppers_purchases_within_the_window_count_as_bought_together(shop, world):
    _, shopper = world.shopper()
    number = card_of(shop.db, shopper)
    earlier = shop.sell("Kettle", card_number=number)
    shop.sell("Scale", card_number=number)
    assert shop.pair("Kettle", "Scale") == (1, 0)

    shop.db.execute(
        update(Sale).where(Sale.id == earlier.id).values(created_at=utcnow() - timedelta(days=8))
    )
    shop.sell("Filter", card_number=number)
    assert shop.pair("Kettle", "Filter") is None
    assert shop.pair("Scale", "Filter") == (1, 0)


def test_a_joined_shoppers_history_seeds_suggestions(shop, world):
    _, shopper = world.shopper()
    shop.sell("Kettle", "Scale")  # someone else
    shop.sell("Kettle", card_number=card_of(shop.db, shopper))
    assert shop.suggest("Mug") == []
    assert shop.suggest("Mug", customer_id=shopper["id"]) == [
        ("Scale", "your_history", "Kettle"),
    ]


def test_the_boost_lifts_a_product_that_sells_elsewhere_and_is_missed_here(shop):
    shop.sell("Kettle", "Scale")
    shop.sell("Kettle", "Filter")
    # Scale and Filter tie on co-occurrence: Filter wins when it has the lower id
    first, second = sorted(["Scale", "Filter"], key=lambda n: shop.p[n].id)
    assert [n for n, _, _ in shop.suggest("Kettle")] == [first, second]
    shop.sell(second, store=shop.there, quantity=10)
    assert shop.suggest("Kettle") == [
        (second, "hidden_gem", "Kettle"),
        (first, "bought_with", "Kettle"),
    ]
    for _ in range(20):  # tapped a lot here: no longer hidden
        shop.taps(second)
    assert [n for n, _, _ in shop.suggest("Kettle")] == [first, second]


def test_the_same_history_gives_the_same_suggestions_every_time(shop):
    fixed_history(shop)
    first = suggest(shop.db, store_id=shop.here.id, product_id=shop.p["Mug"].id)
    for _ in range(3):
        assert suggest(shop.db, store_id=shop.here.id, product_id=shop.p["Mug"].id) == first


def test_recounting_from_history_gives_the_running_counts(shop, world):
    _, shopper = world.shopper()
    fixed_history(shop)
    number = card_of(shop.db, shopper)
    shop.sell("Kettle", card_number=number)
    shop.sell("Scale", "Mug", card_number=number)

    def snapshot():
        pairs = shop.db.execute(select(ProductPairCount.__table__)).all()
        products = shop.db.execute(select(ProductStoreCount.__table__)).all()
        return sorted(pairs), sorted(products)

    running = snapshot()
    counts.recount(shop.db)
    assert snapshot() == running
    assert len(running[0]) > 0


def test_the_recount_command_rebuilds_the_counts(app, shop):
    shop.sell("Kettle", "Scale")
    shop.db.execute(ProductPairCount.__table__.delete())
    assert shop.pair("Kettle", "Scale") is None
    result = app.test_cli_runner().invoke(args=["kiosk", "recount"])
    assert result.exit_code == 0, result.output
    assert shop.pair("Kettle", "Scale") == (1, 0)


def test_sales_counted_together_later_count_as_each_counted_alone_and_as_a_recount(shop, world):
    """A shopper's sales over two weeks, counted in two goes after they were made (as the app
    counts them, after their commits): the same counts as a recount from history, which pairs
    each sale with what the shopper bought in the seven days before it."""
    _, shopper = world.shopper()
    number = card_of(shop.db, shopper)
    days_ago = {("Kettle",): 13, ("Scale",): 9, ("Mug", "Beans"): 4, ("Filter",): 3,
                ("Grinder", "Mug"): 0}  # fmt: skip
    for n, (names, ago) in enumerate(days_ago.items()):
        if n == 2:  # the first two counted already: the rest meet them as earlier purchases
            assert counts.count_new_sales(shop.db) == 2
        sale = make_sale(
            shop.db, settings(), shop.tills[shop.here.id], presented={"card_number": number},
            lines=[(shop.p[n].sku, 1) for n in names],
            tenders=[("cash", 300 * len(names))],
        ).sale  # fmt: skip
        write_kept_now(shop.db)
        when = sale.created_at - timedelta(days=ago)
        shop.db.execute(update(Sale).where(Sale.id == sale.id).values(created_at=when))
    assert counts.count_new_sales(shop.db) == len(days_ago) - 2
    assert counts.count_new_sales(shop.db) == 0  # each once

    def snapshot():
        pairs = shop.db.execute(select(ProductPairCount.__table__)).all()
        products = shop.db.execute(select(ProductStoreCount.__table__)).all()
        return sorted(pairs), sorted(products)

    together = snapshot()
    assert shop.pair("Kettle", "Scale") == (1, 0)  # 4 days apart
    assert shop.pair("Scale", "Beans") == (1, 0)  # 5 days apart, counted at different times
    assert shop.pair("Kettle", "Mug") is None  # 9 days apart
    assert shop.pair("Scale", "Grinder") is None  # 9 days apart
    assert shop.pair("Mug", "Beans") == (2, 0)  # in one sale; and Beans before today's Mug
    assert shop.pair("Mug", "Filter") == (2, 0)  # each bought within a day of the other
    assert shop.pair("Grinder", "Mug") == (1, 0)  # once per sale, however they met in it
    counts.recount(shop.db)
    assert snapshot() == together
