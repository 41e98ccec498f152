"""Tap analytics for store staff and admins: what shoppers tap at the kiosks, and what of it
they buy.

Over a range of days (UTC) at one store or every store:

- the most-tapped products of each store and day;
- tap-to-purchase conversion: of the product taps made by a known shopper (one who joined the
  kiosk session with their card), those followed by that shopper buying that product, in any
  store, within ``days`` days of the tap;
- products bought but rarely tapped (fewer taps than units sold, the fewest taps per unit
  first), and tapped but rarely bought (fewer units sold than taps, the fewest units per tap
  first): what the shelves hide, and what catches the eye but does not sell.

Ties always go to the lower product id, so the same data gives the same answer.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.errors import Forbidden
from app.auth.models import Staff
from app.auth.principal import Principal
from app.catalog.models import Product
from app.core.errors import ValidationFailed
from app.kiosk.models import KioskTap
from app.sales.models import Sale, SaleLine
from app.stores.models import Store

#: Products per list (per store and day for the most tapped).
TOP = 10
#: The longest range of days one answer covers.
MAX_RANGE_DAYS = 366


class NotYourStore(Forbidden):
    code = "not_your_store"
    message = "Staff of a store see that store's analytics only."


@dataclass(frozen=True)
class Scope:
    store_id: int | None  # None: every store (admins only)
    first: date
    last: date
    days: int

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, time(), UTC)

    @property
    def until(self) -> datetime:
        """The end of the range, exclusive."""
        return datetime.combine(self.last + timedelta(days=1), time(), UTC)


def _own_store_id(s: Session, principal: Principal) -> int | None:
    return s.scalar(select(Staff.store_id).where(Staff.id == principal.staff_id))


def stores_open_to(s: Session, principal: Principal) -> list[Store]:
    """The stores whose analytics a staff member may ask for, by name: every store for an
    admin, else their own."""
    if principal.role == "admin":
        return list(s.scalars(select(Store).order_by(Store.name, Store.id)))
    return list(s.scalars(select(Store).where(Store.id == _own_store_id(s, principal))))


def scope_for(
    s: Session,
    principal: Principal,
    *,
    store_id: int | None,
    first: date | None,
    last: date | None,
    days: int,
    today: date | None = None,
) -> Scope:
    """What a caller may see: an admin any store or all of them; other staff their own store
    only (theirs when none is asked). Raises NotYourStore, ValidationFailed."""
    if principal.kind != "staff":
        raise NotYourStore()
    if principal.role != "admin":
        own = _own_store_id(s, principal)
        if own is None or (store_id is not None and store_id != own):
            raise NotYourStore()
        store_id = own
    elif store_id is not None and s.get(Store, store_id) is None:
        raise ValidationFailed(fields={"store_id": ["No such store."]})
    last = last or today or datetime.now(UTC).date()
    first = first or last - timedelta(days=6)
    if first > last:
        raise ValidationFailed(fields={"from": ["Must not be after `to`."]})
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise ValidationFailed(fields={"from": [f"At most {MAX_RANGE_DAYS} days at a time."]})
    return Scope(store_id, first, last, days)


# -- the rules, over plain rows ----------------------------------------------------------------


def most_tapped(rows, top: int = TOP) -> list[dict]:
    """``rows`` of (store id, day, product id, taps): per store and day, the ``top`` products,
    most taps first."""
    groups: dict[tuple[int, date], list[tuple[int, int]]] = {}
    for store_id, day, product_id, taps in rows:
        groups.setdefault((store_id, day), []).append((product_id, taps))
    return [
        {
            "store_id": store_id,
            "day": day,
            "products": [
                {"product_id": pid, "taps": taps}
                for pid, taps in sorted(groups[(store_id, day)], key=lambda x: (-x[1], x[0]))[:top]
            ],
        }
        for store_id, day in sorted(groups)
    ]


def conversion(taps, purchases, days: int, top: int = TOP) -> dict:
    """``taps``: (customer id, product id, tapped at) of known shoppers; ``purchases``:
    (customer id, product id, bought at). A tap converts when its shopper bought its product
    at or after the tap and within ``days`` days."""
    bought: dict[tuple[int, int], list[datetime]] = {}
    for customer_id, product_id, at in purchases:
        bought.setdefault((customer_id, product_id), []).append(at)
    for times in bought.values():
        times.sort()
    window = timedelta(days=days)
    tapped, converted = Counter(), Counter()
    for customer_id, product_id, at in taps:
        tapped[product_id] += 1
        times = bought.get((customer_id, product_id), [])
        i = bisect_left(times, at)
        if i < len(times) and times[i] <= at + window:
            converted[product_id] += 1
    total, hits = sum(tapped.values()), sum(converted.values())
    products = sorted(tapped, key=lambda pid: (-tapped[pid], -converted[pid], pid))[:top]
    return {
        "days": days,
        "taps": total,
        "converted": hits,
        "rate": round(hits / total, 4) if total else None,
        "products": [
            {
                "product_id": pid,
                "taps": tapped[pid],
                "converted": converted[pid],
                "rate": round(converted[pid] / tapped[pid], 4),
            }
            for pid in products
        ],
    }


def rarely(taps: Counter, sold: Counter, top: int = TOP) -> tuple[list[dict], list[dict]]:
    """(bought but rarely tapped, tapped but rarely bought), from taps and units sold per
    product."""
    products = set(taps) | set(sold)
    bought_more = [p for p in products if sold[p] > taps[p]]
    tapped_more = [p for p in products if taps[p] > sold[p]]
    bought_more.sort(key=lambda p: (Fraction(taps[p], sold[p]), -sold[p], p))
    tapped_more.sort(key=lambda p: (Fraction(sold[p], taps[p]), -taps[p], p))

    def row(p):
        return {"product_id": p, "taps": taps[p], "sold": sold[p]}

    return [row(p) for p in bought_more[:top]], [row(p) for p in tapped_more[:top]]


# -- reading them ------------------------------------------------------------------------------


def _day(s: Session, column):
    if s.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def analytics(s: Session, scope: Scope) -> dict:
    """The whole answer of ``GET /v1/kiosk/analytics`` for ``scope``."""
    in_range = [
        KioskTap.kind == "product",
        KioskTap.product_id.is_not(None),
        KioskTap.tapped_at >= scope.since,
        KioskTap.tapped_at < scope.until,
    ]
    if scope.store_id is not None:
        in_range.append(KioskTap.store_id == scope.store_id)
    day = _day(s, KioskTap.tapped_at)
    daily = s.execute(
        select(KioskTap.store_id, day, KioskTap.product_id, func.count())
        .where(*in_range)
        .group_by(KioskTap.store_id, day, KioskTap.product_id)
    ).all()
    busiest = most_tapped((st, _as_date(d), pid, n) for st, d, pid, n in daily)

    known_taps = s.execute(
        select(KioskTap.customer_id, KioskTap.product_id, KioskTap.tapped_at).where(
            *in_range, KioskTap.customer_id.is_not(None)
        )
    ).all()
    customers = {c for c, _, _ in known_taps}
    purchases = []
    if customers:
        purchases = s.execute(
            select(Sale.customer_id, SaleLine.product_id, Sale.created_at)
            .join(SaleLine, SaleLine.sale_id == Sale.id)
            .where(
                Sale.customer_id.in_(customers),
                Sale.created_at >= scope.since,
                Sale.created_at < scope.until + timedelta(days=scope.days),
            )
        ).all()
    converted = conversion(known_taps, purchases, scope.days)

    taps, per_day = Counter(), Counter()
    for _, d, pid, n in daily:
        taps[pid] += n
        per_day[_as_date(d)] += n
    sold_where = [Sale.created_at >= scope.since, Sale.created_at < scope.until]
    if scope.store_id is not None:
        sold_where.append(Sale.store_id == scope.store_id)
    sold = Counter(
        dict(
            s.execute(
                select(SaleLine.product_id, func.sum(SaleLine.quantity))
                .join(Sale, Sale.id == SaleLine.sale_id)
                .where(*sold_where)
                .group_by(SaleLine.product_id)
            ).all()
        )
    )
    sold = Counter({pid: int(n) for pid, n in sold.items()})
    bought_not_tapped, tapped_not_bought = rarely(taps, sold)

    named = {r["product_id"] for day_ in busiest for r in day_["products"]}
    named |= {r["product_id"] for r in converted["products"]}
    named |= {r["product_id"] for r in bought_not_tapped + tapped_not_bought}
    products = {
        p.id: {"id": p.id, "sku": p.sku, "name": p.name}
        for p in s.scalars(select(Product).where(Product.id.in_(named)))
    } if named else {}  # fmt: skip
    store_ids = {d["store_id"] for d in busiest} | (
        {scope.store_id} if scope.store_id is not None else set()
    )
    stores = {
        st.id: {"id": st.id, "name": st.name}
        for st in s.scalars(select(Store).where(Store.id.in_(store_ids)))
    } if store_ids else {}  # fmt: skip

    def with_product(rows):
        return [{"product": products[r.pop("product_id")], **r} for r in rows]

    return {
        "store": stores.get(scope.store_id) if scope.store_id is not None else None,
        "from": scope.first,
        "to": scope.last,
        "days": scope.days,
        "taps_per_day": [
            {
                "day": scope.first + timedelta(days=i),
                "taps": per_day[scope.first + timedelta(days=i)],
            }
            for i in range((scope.last - scope.first).days + 1)
        ],
        "most_tapped": [
            {
                "store": stores[d["store_id"]],
                "day": d["day"],
                "products": with_product(d["products"]),
            }
            for d in busiest
        ],
        "conversion": {**converted, "products": with_product(converted["products"])},
        "bought_rarely_tapped": with_product(bought_not_tapped),
        "tapped_rarely_bought": with_product(tapped_not_bought),
    }
