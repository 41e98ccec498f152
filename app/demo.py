"""Demo data for a first look, loaded once by ``flask demo load`` (the README's run command):
two stores, a coffee-and-apparel catalog, a till and a kiosk per store, an admin and two
cashiers, and three shoppers with cards and some history, all made through the same services
the API uses. What a new user needs (URLs, logins, device secrets) is printed and written to
``instance/demo.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from app.auth import services as auth
from app.auth.principal import Principal, hash_token
from app.cards import services as cards
from app.catalog import services as catalog
from app.catalog.models import Product
from app.core.db import session, write_kept_now
from app.core.settings import Settings, settings
from app.customers import services as customers
from app.payments import services as payments
from app.payments.gateway import SandboxGateway
from app.sales import services as sales
from app.stores import services as stores
from app.stores.models import Device, Store

demo_cli = AppGroup("demo", help="Demo data.")

ADMIN = ("admin@omnicard.demo", "Avery Admin", "demo-admin-password")
CASHIERS = [
    ("pike-place", "casey@omnicard.demo", "Casey Cashier", "C100", "1234"),
    ("union-square", "jordan@omnicard.demo", "Jordan Cashier", "C200", "5678"),
]
SHOPPERS = [
    ("ada@example.com", "Ada Lovelace"),
    ("grace@example.com", "Grace Hopper"),
    ("alan@example.com", "Alan Turing"),
]
SHOPPER_PASSWORD = "demo-shopper-password"

# (sku, name, category, price in cents, description)
CATALOG = [
    ("CF-LATTE-T", "Caffè Latte Tall", "coffee", 395, "Espresso with steamed milk."),
    ("CF-LATTE-G", "Caffè Latte Grande", "coffee", 445, "Espresso with steamed milk."),
    ("CF-CAPP-G", "Cappuccino Grande", "coffee", 445, "Espresso, steamed milk, deep foam."),
    ("CF-AMER-G", "Caffè Americano Grande", "coffee", 365, "Espresso shots topped with water."),
    ("CF-MOCHA-G", "Caffè Mocha Grande", "coffee", 525, "Espresso, mocha sauce and milk."),
    ("CF-FLAT-G", "Flat White Grande", "coffee", 495, "Ristretto shots with whole milk."),
    ("CF-COLD-G", "Cold Brew Grande", "coffee", 455, "Steeped cold for twenty hours."),
    ("CF-DRIP-G", "Pike Place Roast Grande", "coffee", 295, "Smooth, balanced drip coffee."),
    ("TE-CHAI-G", "Chai Tea Latte Grande", "tea", 475, "Black tea with cinnamon and clove."),
    ("TE-MATCHA-G", "Matcha Latte Grande", "tea", 525, "Stone-ground green tea and milk."),
    ("TE-EARL-G", "Earl Grey Grande", "tea", 285, "Black tea with bergamot."),
    ("FD-CROIS", "Butter Croissant", "food", 325, "Flaky, all-butter croissant."),
    ("FD-BANANA", "Banana Bread", "food", 345, "Walnuts and pecans."),
    ("FD-BAGEL", "Everything Bagel", "food", 245, "With cream cheese on the side."),
    ("FD-SANDW", "Turkey Pesto Panini", "food", 795, "Turkey, mozzarella, basil pesto."),
    ("FD-COOKIE", "Chocolate Chip Cookie", "food", 275, "Baked in store each morning."),
    ("BN-PIKE", "Pike Place Roast Beans 1 lb", "beans", 1695, "Whole bean, medium roast."),
    ("BN-VERONA", "Caffè Verona Beans 1 lb", "beans", 1695, "Whole bean, dark roast."),
    ("BN-BLONDE", "Veranda Blend Beans 1 lb", "beans", 1695, "Whole bean, blonde roast."),
    ("BN-DECAF", "Decaf House Blend 1 lb", "beans", 1695, "Whole bean, decaf."),
    ("DW-MUG", "Siren Ceramic Mug 12 oz", "drinkware", 1495, "Dishwasher safe."),
    ("DW-TUMBLER", "Steel Tumbler 16 oz", "drinkware", 2995, "Keeps drinks hot for hours."),
    ("DW-COLDCUP", "Reusable Cold Cup 24 oz", "drinkware", 1795, "With a straw."),
    ("DW-TRAVEL", "Travel Press 12 oz", "drinkware", 3495, "A French press that travels."),
    ("AP-TEE-S", "Logo T-Shirt S", "apparel", 2400, "Organic cotton."),
    ("AP-TEE-M", "Logo T-Shirt M", "apparel", 2400, "Organic cotton."),
    ("AP-TEE-L", "Logo T-Shirt L", "apparel", 2400, "Organic cotton."),
    ("AP-HOODIE", "Roastery Hoodie", "apparel", 5900, "Brushed fleece, unisex fit."),
    ("AP-CAP", "Green Apron Cap", "apparel", 2200, "Adjustable strap."),
    ("AP-APRON", "Barista Apron", "apparel", 3400, "Canvas, with pockets."),
    ("AP-SOCKS", "Coffee Bean Socks", "apparel", 1200, "One size."),
    ("AP-TOTE", "Canvas Tote", "apparel", 1800, "Holds a week of groceries."),
    ("CF-LATTE-V", "Caffè Latte Venti", "coffee", 495, "Espresso with steamed milk."),
]
# Sizes of one drink or garment: the kiosks show them together (extra["variant_of"]).
VARIANT_OF = {
    "CF-LATTE-T": "CF-LATTE-G", "CF-LATTE-V": "CF-LATTE-G",
    "AP-TEE-S": "AP-TEE-M", "AP-TEE-L": "AP-TEE-M",
}  # fmt: skip
# Where each category is sold: every store pours drinks and bakes, Pike Place also has the
# merchandise shelves. Some shelves are empty, so the product pages and kiosks show both.
SOLD_AT = {
    "coffee": ("pike-place", "union-square"),
    "tea": ("pike-place", "union-square"),
    "food": ("pike-place", "union-square"),
    "beans": ("pike-place", "union-square"),
    "drinkware": ("pike-place", "union-square"),
    "apparel": ("pike-place",),
}
OUT_OF_STOCK = {
    ("DW-TUMBLER", "union-square"),
    ("BN-DECAF", "union-square"),
    ("AP-TEE-S", "pike-place"),
}
# NFC tags on the kiosk-facing shelf edges, for the in-store kiosks.
TAGS = {
    "DW-TUMBLER": "04A1B2C3D4E5F6", "AP-HOODIE": "04A1B2C3D4E5F7", "BN-PIKE": "04A1B2C3D4E5F8",
    "CF-LATTE-G": "04A1B2C3D4E5F9", "FD-CROIS": "04A1B2C3D4E5FA", "DW-MUG": "04A1B2C3D4E5FB",
    "TE-MATCHA-G": "04A1B2C3D4E5FC", "AP-TEE-M": "04A1B2C3D4E5FD",
}  # fmt: skip
# Past visits to Pike Place's kiosk (days ago, products tapped), and what shoppers bought
# together there, so that its suggestions and the tap analytics have something to show.
# Some products are tapped a lot and rarely bought, others the reverse.
PAST_KIOSK_SESSIONS = [
    (6, ["CF-LATTE-G", "FD-CROIS", "DW-MUG"]),
    (6, ["DW-TUMBLER", "DW-TRAVEL", "BN-PIKE"]),
    (5, ["AP-HOODIE", "AP-CAP", "AP-TOTE"]),
    (4, ["CF-COLD-G", "FD-COOKIE", "DW-COLDCUP"]),
    (3, ["CF-LATTE-G", "FD-BANANA"]),
    (2, ["DW-TUMBLER", "DW-MUG", "BN-VERONA"]),
    (1, ["TE-MATCHA-G", "FD-COOKIE"]),
]
PAST_BASKETS = [
    ["CF-LATTE-G", "FD-CROIS"], ["CF-LATTE-G", "FD-BANANA"], ["CF-LATTE-G", "FD-CROIS"],
    ["CF-COLD-G", "FD-COOKIE"], ["TE-MATCHA-G", "FD-BANANA"], ["BN-PIKE", "DW-MUG"],
    ["BN-VERONA", "DW-TRAVEL"], ["AP-HOODIE", "AP-SOCKS"], ["CF-AMER-G", "FD-BAGEL"],
]  # fmt: skip


def demo_file(settings: Settings) -> Path:
    return Path(settings.demo_file)


def ean13(n: int) -> str:
    body = f"{890000000000 + n:012d}"
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body))
    return body + str((10 - total % 10) % 10)


def _cashier(staff, device) -> Principal:
    return Principal(
        "cashier", staff_id=staff.id, role=staff.role, device_id=device.id,
        device_kind="pos", store_id=device.store_id,
    )  # fmt: skip


def build_demo(settings: Settings, base_url: str) -> dict:
    s = session()
    admin = auth.create_staff(
        s, settings, email=ADMIN[0], name=ADMIN[1], role="admin", password=ADMIN[2]
    )
    info: dict = {
        "urls": {
            "api_docs": f"{base_url}/docs",
            "openapi": f"{base_url}/openapi.json",
            "health": f"{base_url}/v1/health",
            "product_page": f"{base_url}/p/DW-TUMBLER",
        },
        "admin": {"email": ADMIN[0], "password": ADMIN[2], "login": "POST /v1/auth/login "
                  '{"email", "password", "account": "staff"}'},
        "stores": [],
        "shoppers": [],
    }  # fmt: skip
    currency = settings.currency

    products = {}
    for n, (sku, name, category, price, description) in enumerate(CATALOG, start=1):
        tags = [TAGS[sku]] if sku in TAGS else []
        product = catalog.create_product(
            s, sku=sku, currency=currency, barcode=ean13(n), name=name, category=category,
            price_minor=price, description=description, nfc_tag_ids=tags,
        )  # fmt: skip
        product.image_url = f"{base_url}/media/products/{product.id}.svg"
        if sku in VARIANT_OF:
            product.extra = {"variant_of": VARIANT_OF[sku]}
        products[sku] = product
    tills = {}
    for code, email, name, staff_code, pin in CASHIERS:
        store = stores.create_store(
            s, code=code, name=code.replace("-", " ").title(), address=f"1 {code} way",
            currency=currency,
        )  # fmt: skip
        pos, pos_secret = stores.register_device(s, store_id=store.id, kind="pos", name="Till 1")
        kiosk, kiosk_secret = stores.register_device(
            s, store_id=store.id, kind="kiosk", name="Kiosk by the door"
        )
        cashier = auth.create_staff(
            s, settings, email=email, name=name, role="cashier",
            password=f"demo-{staff_code}-password", staff_code=staff_code, pin=pin,
            store_id=store.id,
        )  # fmt: skip
        tills[code] = _cashier(cashier, pos)
        info["stores"].append({
            "id": store.id, "code": code, "name": store.name,
            "pos": {"device_id": pos.id, "secret": pos_secret},
            "kiosk": {"device_id": kiosk.id, "secret": kiosk_secret},
            "cashier": {"email": email, "staff_code": staff_code, "pin": pin,
                        "sign_in": "POST /v1/pos/sessions with the POS secret"},
        })  # fmt: skip

    store_ids = {code: till.store_id for code, till in tills.items()}
    for sku, _name, category, _price, _description in CATALOG:
        catalog.set_stores(s, products[sku], {
            store_ids[code]: (sku, code) not in OUT_OF_STOCK for code in SOLD_AT[category]
        })  # fmt: skip

    pike, union = tills["pike-place"], tills["union-square"]
    gift = cards.issue_batch(s, staff_id=admin.id, size=3, note="Demo gift cards")
    info["gift_cards"] = [{"number": c.number, "security_code": code} for c, code in gift]
    # Gift cards 0 and 1 sold at Union Square's till; 2 stays in the box, for the till demo.
    for n, (physical, _code) in enumerate(gift[:2]):
        cards.sell_gift_card(s, card_number=physical.number)
        payments.top_up_at_till(
            s, card=physical, amount=2_500, tender="cash", store=s.get(Store, union.store_id),
            device_id=union.device_id, principal=union, idempotency_key=f"demo-gift-sale-{n}",
        )  # fmt: skip
        info["gift_cards"][n]["sold"] = True
    for n, (email, name) in enumerate(SHOPPERS):
        token, customer = customers.sign_up(
            s, settings, email=email, password=SHOPPER_PASSWORD, name=name
        )
        card = cards.cards_of(s, customer.id)[0]
        top_up = payments.begin_gateway_top_up(
            s, card=card, amount=5_000 - 1_000 * n, token=SandboxGateway.APPROVE, channel="app",
            principal=f"customer:{customer.id}", idempotency_key=f"demo-top-up-{n}",
        )  # fmt: skip
        payments.settle(s, top_up.id, payments.charge(top_up))
        sale = sales.make_sale(
            s, settings, pike, presented={"card_number": card.number},
            lines=[("CF-LATTE-G", 1), ("FD-CROIS", 1)],
            tenders=[("card_balance", 445 + 325)],
        ).sale  # fmt: skip
        sales.make_sale(
            s, settings, union, presented={"card_number": card.number},
            lines=[("BN-PIKE", 1)], tenders=[("card_balance", 1_000), ("cash", 695)],
        )  # fmt: skip
        if n == 0:
            write_kept_now(s)  # the sale's lines, which the refund reads back
            sales.refund_sale(s, pike, sale.id, [("FD-CROIS", 1)])
            cards.bind_nfc(s, card, "04:DE:AD:BE:EF:01")
        if n == 1:
            physical, code = gift[0]
            cards.register_card(
                s, customer_id=customer.id, number=physical.number, security_code=code,
                client_ip="demo",
            )  # fmt: skip
            info["gift_cards"][0]["registered_to"] = email
        info["shoppers"].append({
            "email": email, "password": SHOPPER_PASSWORD, "name": name, "token": token,
            "card_number": card.number,
        })  # fmt: skip
        if n == 0:
            ada_card = card
    _kiosk_history(s, settings, pike, products, ada_card)
    return info


def _kiosk_history(s, settings: Settings, pike: Principal, products: dict, ada_card) -> None:
    """Past taps at Pike Place's kiosk (one visit by Ada, who tapped her card) and cash sales
    of a few baskets there, through the kiosk's and the till's own services."""
    from datetime import timedelta

    from app.core.types import utcnow
    from app.kiosk.services import TapRead, record_tap

    kiosk = s.scalar(select(Device).where(Device.store_id == pike.store_id, Device.kind == "kiosk"))
    now = utcnow()
    visits = [*PAST_KIOSK_SESSIONS, (1, [ada_card.number, "BN-PIKE", "DW-TUMBLER"])]
    for n, (days_ago, tapped) in enumerate(visits):
        at = now - timedelta(days=days_ago, hours=n)
        for m, what in enumerate(tapped):
            is_card = what == ada_card.number
            read = TapRead(
                tap_ref=f"demo-tap-{n}-{m}", tapped_at=at + timedelta(seconds=20 * m),
                uris=() if is_card else (f"https://omnicard.demo/p/{what}",),
                texts=(what,) if is_card else (),
            )  # fmt: skip
            record_tap(s, kiosk, read, idle_s=settings.kiosk_session_idle_s)
    for basket in PAST_BASKETS:
        total = sum(products[sku].price_minor for sku in basket)
        sales.make_sale(
            s, settings, pike, presented=None, lines=[(sku, 1) for sku in basket],
            tenders=[("cash", total)],
        )  # fmt: skip


def describes_this_database(info: dict) -> bool:
    """Whether a demo file's secrets open this database: its first till's secret is one of
    this database's devices (a file left by another database, or by this one before it was
    emptied and loaded again by someone else, is not)."""
    try:
        secret = info["stores"][0]["pos"]["secret"]
    except (KeyError, IndexError, TypeError):
        return False
    return (
        session().scalar(select(Device.id).where(Device.secret_hash == hash_token(secret)))
        is not None
    )


def load_demo(settings: Settings, base_url: str = "http://127.0.0.1:5000") -> tuple[dict, bool]:
    """Load the demo once. Returns what a new user needs, and whether it was loaded now."""
    s = session()
    path = demo_file(settings)
    if s.scalar(select(Product.id).limit(1)) is not None:
        if path.exists():
            info = json.loads(path.read_text())
            if describes_this_database(info):
                return info, False
        return {
            "note": "This database has data already, and no demo file here describes it: no "
            "demo data was loaded, and no logins or secrets can be shown."
        }, False
    info = build_demo(settings, base_url)
    s.commit()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n")
    return info, True


@demo_cli.command("load")
@click.option("--base-url", default="http://127.0.0.1:5000", show_default=True,
              help="Where the app will be served, for the URLs printed.")  # fmt: skip
def load_command(base_url: str) -> None:
    """Load the demo data unless there is data already; print and save what a user needs."""
    current = settings()
    info, loaded = load_demo(current, base_url.rstrip("/"))
    click.echo("Demo data loaded." if loaded else "Demo data was there already.")
    if "stores" in info:
        click.echo(f"  Admin: {info['admin']['email']} / {info['admin']['password']}")
        for store in info["stores"]:
            c = store["cashier"]
            click.echo(f"  {store['name']}: cashier {c['staff_code']} PIN {c['pin']}; "
                       f"POS secret {store['pos']['secret']}; "
                       f"kiosk secret {store['kiosk']['secret']}")  # fmt: skip
        for shopper in info["shoppers"]:
            click.echo(f"  Shopper: {shopper['email']} / {shopper['password']}, "
                       f"card number {shopper['card_number']}")  # fmt: skip
        click.echo(f"  Everything, with tokens and gift cards: {demo_file(current)}")
    else:
        click.echo(f"  {info['note']}")


@demo_cli.command("file")
def file_command() -> None:
    """Print where this database's demo file is."""
    click.echo(demo_file(settings()))


@demo_cli.command("get")
@click.argument("path")
def get_command(path: str) -> None:
    """Print one value of this database's demo file, e.g. `stores.0.pos.secret` or
    `shoppers.0.card_number` (for shell scripts: `POS=$(flask --app wsgi demo get ...)`)."""
    file = demo_file(settings())
    info = json.loads(file.read_text()) if file.exists() else None
    if info is None or not describes_this_database(info):
        raise click.ClickException("no demo file describes this database: run `flask demo load`")
    value = info
    try:
        for step in path.split("."):
            value = value[int(step)] if isinstance(value, list) else value[step]
    except (KeyError, IndexError, ValueError, TypeError):
        raise click.ClickException(f"the demo file has no {path!r}") from None
    click.echo(value if isinstance(value, str | int) else json.dumps(value))


def init_app(app: Flask) -> None:
    app.cli.add_command(demo_cli)
