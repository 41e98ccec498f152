"""The kiosk's rules: what a tapped tag is, which kiosk session a tap falls into, what the
screen shows for it, pairing a screen, and a shopper's saved products and timeline.

A tap is resolved in this order: a URI record whose path is ``/p/<SKU>`` (any host: the
same tag opens the product page on a shopper's phone) names a product; ``/c/<category>`` a
shelf sign; a Text record holding a 16-digit card number (Luhn) a loyalty card; else the
tag's UID names a product (its tags) or a card (its bound NFC UID); else the tag is unknown.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import AuthToken
from app.auth.services import issue_token
from app.cards.models import Card
from app.cards.numbers import luhn_valid, normalise_nfc_uid
from app.catalog.models import Product, ProductTag, StoreProduct
from app.catalog.pricing import ListPrice, price_cart
from app.catalog.services import ProductNotFound
from app.core import throttle
from app.core.schemas import money
from app.core.types import utcnow
from app.customers import services as customers
from app.events.outbox import emit
from app.kiosk import counts
from app.kiosk.errors import (
    KioskSessionNotFound,
    NoShopper,
    NotSaved,
    PairingCodeInvalid,
    SessionOver,
)
from app.kiosk.models import KioskPairingCode, KioskSession, KioskTap, SavedProduct
from app.payments.models import TopUp
from app.sales.models import Refund, Sale, SaleLine
from app.stores.models import Device, Store

PRODUCT_PATH = re.compile(r"^/p/([^/]+)/?$")
SIGN_PATH = re.compile(r"^/c/([^/]+)/?$")
#: Pairing codes: no 0/O, 1/I/L, so a code read off a screen is typed right.
PAIRING_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
#: The most products a category's screen lists.
CATEGORY_PRODUCTS = 24


# -- what a tag is ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TapRead:
    """What the kiosk read off a tag."""

    tap_ref: str
    tapped_at: datetime
    uid: str | None = None
    uris: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    unreadable: bool = False


@dataclass
class Resolved:
    kind: str  # product, sign, card, unknown, refused
    product: Product | None = None
    category: str | None = None
    card: Card | None = None
    #: The screen's message code, if any (unknown_tag, not_sold_here, ...).
    message: str | None = None
    detail: str = ""


def card_number_in(text: str) -> str | None:
    """A 16-digit card number (Luhn) written in ``text``, spaces and dashes allowed."""
    digits = re.sub(r"[\s-]", "", text)
    return digits if luhn_valid(digits) else None


def resolve(s: Session, read: TapRead, store_id: int) -> Resolved:
    """What the tag is, for a kiosk of ``store_id``."""
    for uri in read.uris:
        path = unquote(urlsplit(uri.strip()).path)
        if m := PRODUCT_PATH.match(path):
            return _product(s, s.scalar(select(Product).where(Product.sku == m.group(1))), store_id,
                            f"No product has the SKU {m.group(1)!r}.")  # fmt: skip
        if m := SIGN_PATH.match(path):
            return _sign(s, m.group(1))
    for text in read.texts:
        if number := card_number_in(text):
            return _card(s.scalar(select(Card).where(Card.number == number)))
    uid = normalise_nfc_uid(read.uid) if read.uid else None
    if uid is not None:
        tagged = s.scalar(
            select(Product)
            .join(ProductTag, ProductTag.product_id == Product.id)
            .where(ProductTag.tag_id == uid)
        )
        if tagged is not None:
            return _product(s, tagged, store_id, "")
        card = s.scalar(select(Card).where(Card.nfc_uid == uid))
        if card is not None:
            return _card(card)
    if read.unreadable:
        return Resolved("unknown", message="unreadable_tag", detail="The tag's NDEF is unreadable.")
    return Resolved("unknown", message="unknown_tag", detail="No product, sign or card.")


def _product(s: Session, product: Product | None, store_id: int, missing: str) -> Resolved:
    if product is None or not product.active:
        detail = missing or "The product is no longer sold."
        return Resolved("unknown", message="unknown_tag", detail=detail[:200])
    if _carried(s, product.id, store_id) is None:
        return Resolved(
            "product", product=product, message="not_sold_here", detail="Not sold at this store."
        )
    return Resolved("product", product=product)


def _sign(s: Session, category: str) -> Resolved:
    known = s.scalar(
        select(Product.category)
        .where(func.lower(Product.category) == category.lower(), Product.active)
        .limit(1)
    )
    if known is None:
        return Resolved("unknown", message="unknown_tag", detail=f"No category {category!r}."[:200])
    return Resolved("sign", category=known)


def _card(card: Card | None) -> Resolved:
    if card is None:
        return Resolved("unknown", message="unknown_tag", detail="No such card.")
    if card.status != "active":
        return Resolved("refused", card=card, message="card_frozen", detail=f"Card {card.status}.")
    if card.customer_id is None:
        return Resolved(
            "refused",
            card=card,
            message="card_not_registered",
            detail="The card is not registered to a shopper.",
        )
    return Resolved("card", card=card)


def _carried(s: Session, product_id: int, store_id: int) -> bool | None:
    """Whether the store has the product in stock; None when it does not sell it."""
    return s.scalar(
        select(StoreProduct.in_stock).where(
            StoreProduct.product_id == product_id, StoreProduct.store_id == store_id
        )
    )


# -- taps and kiosk sessions ------------------------------------------------------------------


def record_tap(s: Session, device: Device, read: TapRead, *, idle_s: int) -> tuple[KioskTap, dict]:
    """Record a tap (once per ``tap_ref``: a replay gives the tap already recorded), put it in
    its kiosk session (a new one after ``idle_s`` without a tap), and tell the kiosk's screen:
    (the tap, the screen's payload)."""
    existing = _tap_by_ref(s, device.id, read.tap_ref)
    if existing is not None:
        return existing, screen_for(s, existing)
    # One tap of a kiosk at a time: the session a tap falls into depends on the one before.
    s.execute(select(Device.id).where(Device.id == device.id).with_for_update())
    existing = _tap_by_ref(s, device.id, read.tap_ref)
    if existing is not None:
        return existing, screen_for(s, existing)
    now = utcnow()
    tapped_at = min(read.tapped_at, now)  # a kiosk whose clock runs ahead
    resolved = resolve(s, read, device.store_id)
    joining = resolved.card.customer_id if resolved.kind == "card" else None
    kiosk_session = _session_for(s, device, tapped_at, joining, idle_s)
    tap = KioskTap(
        device_id=device.id,
        store_id=device.store_id,
        tap_ref=read.tap_ref,
        tapped_at=tapped_at,
        received_at=now,
        kind=resolved.kind,
        product_id=resolved.product.id if resolved.product else None,
        category=resolved.category,
        customer_id=kiosk_session.customer_id,
        kiosk_session_id=kiosk_session.id,
        detail=resolved.detail,
    )
    try:
        with s.begin_nested():
            s.add(tap)
            s.flush()
    except IntegrityError:  # the same tap, recorded meanwhile
        existing = _tap_by_ref(s, device.id, read.tap_ref)
        return existing, screen_for(s, existing)
    counts.record_tap(s, tap)
    screen = screen_for(s, tap, resolved)
    emit(s, "kiosk.screen", screen, device_id=device.id)
    return tap, screen


def _tap_by_ref(s: Session, device_id: int, tap_ref: str) -> KioskTap | None:
    return s.scalar(
        select(KioskTap).where(KioskTap.device_id == device_id, KioskTap.tap_ref == tap_ref)
    )


def _session_for(
    s: Session, device: Device, tapped_at: datetime, joining: int | None, idle_s: int
) -> KioskSession:
    """The kiosk session a tap at ``tapped_at`` falls into: the kiosk's latest unless it has
    been idle for ``idle_s`` (or another shopper's card starts one of their own), then a new
    one. ``joining``: the shopper whose card this tap is."""
    idle = timedelta(seconds=idle_s)
    latest = s.scalar(
        select(KioskSession)
        .where(KioskSession.device_id == device.id)
        .order_by(KioskSession.last_tap_at.desc(), KioskSession.id.desc())
        .limit(1)
    )
    if (
        latest is not None
        and latest.ended_at is None
        and abs(tapped_at - latest.last_tap_at) <= idle
        and (joining is None or latest.customer_id in (None, joining))
    ):
        latest.last_tap_at = max(latest.last_tap_at, tapped_at)
        if joining is not None:
            latest.customer_id = joining
        s.flush()
        return latest
    if latest is not None and latest.ended_at is None:
        latest.ended_at = min(latest.last_tap_at + idle, max(tapped_at, latest.last_tap_at))
    started = KioskSession(
        device_id=device.id,
        store_id=device.store_id,
        customer_id=joining,
        started_at=tapped_at,
        last_tap_at=tapped_at,
    )
    s.add(started)
    s.flush()
    return started


def session_is_over(s: Session, kiosk_session: KioskSession, idle_s: int) -> bool:
    """Over when a later tap ended it, or no tap reached the server for ``idle_s`` (the
    server's own clock: a kiosk's may be off)."""
    if kiosk_session.ended_at is not None:
        return True
    last_received = s.scalar(
        select(func.max(KioskTap.received_at)).where(KioskTap.kiosk_session_id == kiosk_session.id)
    )
    return last_received is None or utcnow() - last_received > timedelta(seconds=idle_s)


# -- what the screen shows ----------------------------------------------------------------------


def prices_for(
    s: Session, products: list[Product], *, customer_id: int | None, store_id: int
) -> dict[int, dict]:
    """Each product's price now for this shopper (None: no one) at this store's kiosk, from
    the one pricing function, with its list price."""
    priced = {}
    for product in products:
        cart = price_cart(
            [(product.sku, 1)],
            {product.sku: ListPrice(product.id, product.sku, product.name, product.price_minor,
                                    product.currency)},
            currency=product.currency, customer_id=customer_id, channel="kiosk",
            store_id=store_id, at=utcnow(),
        )  # fmt: skip
        priced[product.id] = {
            "price": money(cart.total_minor, cart.currency),
            "list_price": money(product.price_minor, product.currency),
        }
    return priced


def stock_at(s: Session, product_ids: list[int], store_id: int) -> dict[int, bool]:
    """In stock or not, for the products the store sells (others are left out)."""
    if not product_ids:
        return {}
    rows = s.execute(
        select(StoreProduct.product_id, StoreProduct.in_stock).where(
            StoreProduct.store_id == store_id, StoreProduct.product_id.in_(product_ids)
        )
    )
    return dict(rows.all())


def featured_products(s: Session, store_id: int, limit: int) -> list[Product]:
    """Up to ``limit`` of the store's products in stock, oldest first: the attract loop's."""
    return list(
        s.scalars(
            select(Product)
            .join(StoreProduct, StoreProduct.product_id == Product.id)
            .where(StoreProduct.store_id == store_id, StoreProduct.in_stock, Product.active)
            .order_by(Product.id)
            .limit(limit)
        )
    )


def picture_of(product: Product) -> str:
    from app.web.products import picture_url

    return picture_url(product)


def product_summaries(
    s: Session, products: list[Product], *, store_id: int, customer_id: int | None
) -> list[dict]:
    """What a screen or a list shows of each product: id, sku, name, image_url, category,
    price and list_price (for the shopper), in_stock (at the store)."""
    prices = prices_for(s, products, customer_id=customer_id, store_id=store_id)
    stock = stock_at(s, [p.id for p in products], store_id)
    return [
        {
            "id": p.id,
            "sku": p.sku,
            "name": p.name,
            "image_url": picture_of(p),
            "category": p.category,
            **prices[p.id],
            "in_stock": bool(stock.get(p.id, False)),
        }
        for p in products
    ]


def variants_of(s: Session, product: Product) -> list[Product]:
    """The product's family of sizes or variants: the products whose ``extra["variant_of"]``
    names the same parent SKU, and the parent; none when the product stands alone."""
    parent_sku = (product.extra or {}).get("variant_of") or product.sku
    family = list(
        s.scalars(
            select(Product)
            .where(
                or_(Product.extra["variant_of"].as_string() == parent_sku,
                    Product.sku == parent_sku),
                Product.active,
            )
            .order_by(Product.price_minor, Product.id)
        )
    )  # fmt: skip
    return family if len(family) > 1 else []


def product_view(s: Session, product: Product, *, store_id: int, customer_id: int | None) -> dict:
    [summary] = product_summaries(s, [product], store_id=store_id, customer_id=customer_id)
    variants = variants_of(s, product)
    priced = product_summaries(s, variants, store_id=store_id, customer_id=customer_id)
    return summary | {
        "description": product.description,
        "sold_here": _carried(s, product.id, store_id) is not None,
        "variants": [
            {"sku": v["sku"], "name": v["name"], "price": v["price"], "in_stock": v["in_stock"]}
            for v in priced
        ],
    }


def category_view(s: Session, category: str, *, store_id: int, customer_id: int | None) -> dict:
    products = list(
        s.scalars(
            select(Product)
            .join(StoreProduct, StoreProduct.product_id == Product.id)
            .where(
                Product.category == category,
                Product.active,
                StoreProduct.store_id == store_id,
            )
            .order_by(Product.name, Product.id)
            .limit(CATEGORY_PRODUCTS)
        )
    )
    return {
        "name": category,
        "products": product_summaries(s, products, store_id=store_id, customer_id=customer_id),
    }


def session_product_ids(s: Session, kiosk_session_id: int, up_to_tap_id: int) -> list[int]:
    """The products tapped in the session up to this tap, latest first, each once."""
    rows = s.scalars(
        select(KioskTap.product_id)
        .where(
            KioskTap.kiosk_session_id == kiosk_session_id,
            KioskTap.id <= up_to_tap_id,
            KioskTap.product_id.is_not(None),
        )
        .order_by(KioskTap.id.desc())
    )
    return list(dict.fromkeys(rows))


def screen_for(s: Session, tap: KioskTap, resolved: Resolved | None = None) -> dict:
    """The kiosk screen's payload for a tap (the ``kiosk.screen`` event's data)."""
    from app.kiosk.suggestions import suggest

    store_id, customer_id = tap.store_id, tap.customer_id
    message = resolved.message if resolved else _message_of(tap)
    view = {"product": "product", "sign": "category", "card": "shopper"}.get(tap.kind, tap.kind)
    payload = {
        "view": view,
        "session_id": tap.kiosk_session_id,
        "tap_id": tap.id,
        "shopper": customers.first_name_and_stars(s, customer_id),
        "product": None,
        "category": None,
        "suggestions": [],
        "message": {"code": message} if message else None,
    }
    if tap.kind in ("product", "sign", "card"):
        counts.count_new_sales(s)  # the sales made since anyone last looked
        session_products = session_product_ids(s, tap.kiosk_session_id, tap.id)
        payload["suggestions"] = suggest(
            s,
            store_id=store_id,
            product_id=tap.product_id,
            session_product_ids=session_products,
            customer_id=customer_id,
            limit=4,
        )
    if tap.kind == "product":
        product = s.get(Product, tap.product_id)
        payload["product"] = product_view(s, product, store_id=store_id, customer_id=customer_id)
    elif tap.kind == "sign":
        payload["category"] = category_view(
            s, tap.category, store_id=store_id, customer_id=customer_id
        )
    return payload


def _message_of(tap: KioskTap) -> str | None:
    """The message of a tap recorded before (its detail says which)."""
    if tap.kind == "product" and tap.detail:
        return "not_sold_here"
    if tap.kind == "refused":
        return "card_not_registered" if "registered" in tap.detail else "card_frozen"
    if tap.kind == "unknown":
        return "unreadable_tag" if "unreadable" in tap.detail else "unknown_tag"
    return None


# -- pairing a screen -------------------------------------------------------------------------


def _code_hash(code: str) -> str:
    normal = re.sub(r"[\s-]", "", code).upper()
    return hashlib.sha256(normal.encode()).hexdigest()


def new_pairing_code(s: Session, device: Device, ttl_s: int) -> tuple[str, KioskPairingCode]:
    """A one-use code, ``ABC-123``, that pairs a screen to this kiosk for ``ttl_s``."""
    raw = "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(6))
    code = f"{raw[:3]}-{raw[3:]}"
    row = KioskPairingCode(
        code_hash=_code_hash(code),
        device_id=device.id,
        expires_at=utcnow() + timedelta(seconds=ttl_s),
    )
    s.add(row)
    s.flush()
    return code, row


#: Wrong pairing codes one address may type in the window before it must wait.
PAIRING_MAX_FAILURES = 10
PAIRING_WINDOW_S = 15 * 60


def pair_screen(s: Session, code: str, token_ttl_s: int, *, client_ip: str | None = None) -> str:
    """Use a pairing code: the new ``kiosk_screen`` login token of its kiosk (for the
    ``omnicard_kiosk`` cookie), good for ``token_ttl_s``. Case, spaces and the dash do not
    matter. Given the client's address (a page's request), wrong codes from it are counted
    and, past a few, refused for a while before they are even looked at (a failure is
    committed at once).

    Raises PairingCodeInvalid (unknown, used, expired, or its kiosk retired),
    TooManyAttempts."""
    own = None
    if client_ip is not None:
        own = throttle.Limit("kiosk_pair:address", throttle.subject(client_ip),
                             PAIRING_MAX_FAILURES, PAIRING_WINDOW_S)  # fmt: skip
        throttle.refuse_if_over(s, own)
    try:
        return _pair(s, code, token_ttl_s)
    except PairingCodeInvalid:
        if own is not None:
            throttle.record_failure(s, own)
        raise


def _pair(s: Session, code: str, token_ttl_s: int) -> str:
    now = utcnow()
    row = s.scalar(
        select(KioskPairingCode)
        .where(KioskPairingCode.code_hash == _code_hash(code))
        .with_for_update()
    )
    if row is None or row.used_at is not None or row.expires_at <= now:
        raise PairingCodeInvalid()
    device = s.get(Device, row.device_id)
    if device is None or not device.active or device.kind != "kiosk":
        raise PairingCodeInvalid()
    used = s.execute(
        update(KioskPairingCode)
        .where(KioskPairingCode.id == row.id, KioskPairingCode.used_at.is_(None))
        .values(used_at=now)
    )
    if used.rowcount != 1:
        raise PairingCodeInvalid()
    token, _ = issue_token(s, "kiosk_screen", token_ttl_s, device_id=device.id)
    return token


def screens_of(s: Session, device_id: int) -> list[AuthToken]:
    return list(
        s.scalars(
            select(AuthToken).where(
                AuthToken.kind == "kiosk_screen",
                AuthToken.device_id == device_id,
                AuthToken.revoked_at.is_(None),
            )
        )
    )


# -- save for later ---------------------------------------------------------------------------


def save_for_later(
    s: Session, *, device_id: int, kiosk_session_id: int, product_id: int, idle_s: int
) -> SavedProduct:
    """Save the product for the kiosk session's shopper (again: it moves to the top), and
    tell the shopper's website. A session idle for ``idle_s`` is over.

    Raises KioskSessionNotFound (not this kiosk's), SessionOver, NoShopper, ProductNotFound."""
    kiosk_session = s.get(KioskSession, kiosk_session_id)
    if kiosk_session is None or kiosk_session.device_id != device_id:
        raise KioskSessionNotFound(session_id=kiosk_session_id)
    if session_is_over(s, kiosk_session, idle_s):
        raise SessionOver(session_id=kiosk_session_id)
    if kiosk_session.customer_id is None:
        raise NoShopper(session_id=kiosk_session_id)
    product = s.get(Product, product_id)
    if product is None or not product.active:
        raise ProductNotFound(product_id=product_id)
    customer_id = kiosk_session.customer_id
    now = utcnow()
    saved = s.scalar(
        select(SavedProduct)
        .where(SavedProduct.customer_id == customer_id, SavedProduct.product_id == product_id)
        .with_for_update()
    )
    where = {"saved_at": now, "store_id": kiosk_session.store_id, "device_id": device_id}
    if saved is None:
        try:
            with s.begin_nested():
                saved = SavedProduct(customer_id=customer_id, product_id=product_id, **where)
                s.add(saved)
        except IntegrityError:  # saved at the same moment from another screen
            saved = s.scalar(
                select(SavedProduct).where(
                    SavedProduct.customer_id == customer_id, SavedProduct.product_id == product_id
                )
            )
    for name, value in where.items():
        setattr(saved, name, value)
    s.flush()
    emit(
        s,
        "saved.added",
        {"product_id": product.id, "sku": product.sku, "name": product.name,
         "saved_at": now.isoformat()},
        customer_id=customer_id,
    )  # fmt: skip
    return saved


def saved_of(s: Session, customer_id: int) -> list[dict]:
    """The shopper's saved products, newest first: each with its price now, where and when."""
    rows = s.execute(
        select(SavedProduct, Product, Store)
        .join(Product, Product.id == SavedProduct.product_id)
        .join(Store, Store.id == SavedProduct.store_id)
        .where(SavedProduct.customer_id == customer_id)
        .order_by(SavedProduct.saved_at.desc(), SavedProduct.id.desc())
    ).all()
    items = []
    for saved, product, store in rows:
        [summary] = product_summaries(s, [product], store_id=store.id, customer_id=customer_id)
        items.append(
            {
                "product": summary | {"active": product.active},
                "store": {"id": store.id, "name": store.name},
                "saved_at": saved.saved_at,
            }
        )
    return items


def unsave(s: Session, customer_id: int, product_id: int) -> None:
    """Raises NotSaved."""
    saved = s.scalar(
        select(SavedProduct).where(
            SavedProduct.customer_id == customer_id, SavedProduct.product_id == product_id
        )
    )
    if saved is None:
        raise NotSaved(product_id=product_id)
    s.delete(saved)
    s.flush()
    emit(s, "saved.removed", {"product_id": product_id}, customer_id=customer_id)


# -- the shopper's timeline -------------------------------------------------------------------

#: The kinds of a timeline's items; among items of one moment, in this order (newest first).
TIMELINE_KINDS = ("purchase", "refund", "top_up", "kiosk_tap")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class TimelineCursor:
    """Where a page ended: the last item's moment (microseconds since 1970), kind, id."""

    at_us: int
    rank: int
    id: int

    def encode(self) -> str:
        return f"{self.at_us}.{self.rank}.{self.id}"

    @classmethod
    def decode(cls, text: str) -> TimelineCursor | None:
        m = re.fullmatch(r"(\d{1,17})\.([0-3])\.(\d{1,19})", text)
        if m is None:
            return None
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def _micros(at: datetime) -> int:
    delta = at - EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds


@dataclass
class _Source:
    rank: int
    at: object
    id: object
    query: object


def timeline(
    s: Session, customer_id: int, *, limit: int, after: TimelineCursor | None
) -> tuple[list[dict], TimelineCursor | None]:
    """The shopper's purchases, refunds, top-ups and kiosk taps, newest first, a page at a
    time: (items, the cursor of the next page or None)."""
    sources = {
        "purchase": _Source(
            0, Sale.created_at, Sale.id,
            select(Sale, Store).join(Store, Store.id == Sale.store_id)
            .where(Sale.customer_id == customer_id),
        ),
        "refund": _Source(
            1, Refund.created_at, Refund.id,
            select(Refund, Store).join(Sale, Sale.id == Refund.sale_id)
            .join(Store, Store.id == Sale.store_id).where(Sale.customer_id == customer_id),
        ),
        "top_up": _Source(
            2, TopUp.created_at, TopUp.id,
            select(TopUp, Store).join(Card, Card.id == TopUp.card_id)
            .outerjoin(Store, Store.id == TopUp.store_id)
            .where(Card.customer_id == customer_id, TopUp.status == "succeeded"),
        ),
        "kiosk_tap": _Source(
            3, KioskTap.tapped_at, KioskTap.id,
            select(KioskTap, Store).join(Store, Store.id == KioskTap.store_id)
            .where(KioskTap.customer_id == customer_id,
                   KioskTap.kind.in_(("product", "sign", "card"))),
        ),
    }  # fmt: skip
    found: list[tuple[TimelineCursor, str, object, Store | None]] = []
    for kind, source in sources.items():
        query = source.query
        if after is not None:
            at = EPOCH + timedelta(microseconds=after.at_us)
            if source.rank < after.rank:
                query = query.where(source.at <= at)
            elif source.rank > after.rank:
                query = query.where(source.at < at)
            else:
                query = query.where(
                    or_(source.at < at, and_(source.at == at, source.id < after.id))
                )
        query = query.order_by(source.at.desc(), source.id.desc()).limit(limit + 1)
        for row, store in s.execute(query).all():
            at_value = getattr(row, source.at.key)
            found.append((TimelineCursor(_micros(at_value), source.rank, row.id), kind, row, store))
    found.sort(key=lambda item: item[0], reverse=True)
    page = found[:limit]
    items = [_timeline_item(s, kind, row, store) for _, kind, row, store in page]
    more = len(found) > limit
    return items, (page[-1][0] if more and page else None)


def _timeline_item(s: Session, kind: str, row, store: Store | None) -> dict:
    where = {"id": store.id, "name": store.name} if store is not None else None
    if kind == "purchase":
        names = s.scalars(
            select(SaleLine.name).where(SaleLine.sale_id == row.id).order_by(SaleLine.line_no)
        ).all()
        return {"kind": kind, "id": f"sale:{row.id}", "at": row.created_at, "store": where,
                "channel": "pos", "what": ", ".join(names),
                "amount": money(row.total_minor, row.currency)}  # fmt: skip
    if kind == "refund":
        sale = s.get(Sale, row.sale_id)
        return {"kind": kind, "id": f"refund:{row.id}", "at": row.created_at, "store": where,
                "channel": "pos", "what": f"Refund of purchase {row.sale_id}",
                "amount": money(row.amount_minor, sale.currency)}  # fmt: skip
    if kind == "top_up":
        return {"kind": kind, "id": f"top_up:{row.id}", "at": row.created_at, "store": where,
                "channel": row.channel, "what": "Top-up",
                "amount": money(row.amount_minor, row.currency)}  # fmt: skip
    if row.kind == "product":
        what = s.scalar(select(Product.name).where(Product.id == row.product_id)) or ""
    elif row.kind == "sign":
        what = row.category or ""
    else:
        what = "Loyalty card"
    return {"kind": kind, "id": f"kiosk_tap:{row.id}", "at": row.tapped_at, "store": where,
            "channel": "kiosk", "what": what, "amount": None, "tap_kind": row.kind,
            "product_id": row.product_id}  # fmt: skip
