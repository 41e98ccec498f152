"""What a kiosk suggests after a tap: "you might also like", each with a reason in a few words.

Item-to-item co-occurrence: the products bought in the same sale as the ones this session
tapped, and tapped in the same kiosk session as them; with no product tapped yet, those that go
with what the joined shopper bought before. Only products this store sells, never one the
session has tapped already. Deterministic: ties go to the lower product id.

This version counts from the sales and taps at each call; precomputed counts and the boost
for products the shelves hide are to come.
"""

from __future__ import annotations

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session, aliased

from app.catalog.models import Product, StoreProduct
from app.kiosk.models import KioskTap
from app.sales.models import Sale, SaleLine

#: How many of the shopper's past purchases stand for their history.
HISTORY_PRODUCTS = 20


def suggest(
    s: Session,
    *,
    store_id: int,
    product_id: int | None,
    session_product_ids: list[int],
    customer_id: int | None,
    limit: int = 4,
) -> list[dict]:
    """Up to ``limit`` suggestions: ``{"product": summary, "reason": {"kind", "product_name"}}``
    with ``kind`` one of ``bought_with``, ``tapped_with``, ``your_history``, ``hidden_gem``."""
    from app.kiosk.services import product_summaries

    tapped = list(dict.fromkeys([*([product_id] if product_id else []), *session_product_ids]))
    anchors, history = tapped, False
    if not anchors and customer_id is not None:
        anchors, history = _bought_by(s, customer_id), True
    if not anchors:
        return []
    bought = _bought_with(s, anchors)
    tapped_counts = _tapped_with(s, anchors)
    scores: dict[int, tuple[int, str]] = {}
    for pid in set(bought) | set(tapped_counts):
        b, t = bought.get(pid, 0), tapped_counts.get(pid, 0)
        kind = "your_history" if history else ("bought_with" if b >= t else "tapped_with")
        scores[pid] = (b + t, kind)
    for pid in tapped:
        scores.pop(pid, None)
    if not scores:
        return []
    sold_here = set(
        s.scalars(
            select(Product.id)
            .join(StoreProduct, StoreProduct.product_id == Product.id)
            .where(Product.id.in_(list(scores)), Product.active, StoreProduct.store_id == store_id)
        )
    )
    ranked = sorted((pid for pid in scores if pid in sold_here), key=lambda p: (-scores[p][0], p))
    chosen = ranked[:limit]
    if not chosen:
        return []
    products = {p.id: p for p in s.scalars(select(Product).where(Product.id.in_(chosen)))}
    summaries = product_summaries(
        s, [products[pid] for pid in chosen], store_id=store_id, customer_id=customer_id
    )
    anchor_name = None if history else s.get(Product, anchors[0]).name
    return [
        {"product": summary, "reason": {"kind": scores[pid][1], "product_name": anchor_name}}
        for pid, summary in zip(chosen, summaries, strict=True)
    ]


def _bought_by(s: Session, customer_id: int) -> list[int]:
    """The products the shopper bought most recently, each once."""
    rows = s.execute(
        select(SaleLine.product_id, func.max(Sale.id).label("last"))
        .join(Sale, Sale.id == SaleLine.sale_id)
        .where(Sale.customer_id == customer_id)
        .group_by(SaleLine.product_id)
        .order_by(func.max(Sale.id).desc(), SaleLine.product_id)
        .limit(HISTORY_PRODUCTS)
    )
    return [pid for pid, _ in rows]


def _bought_with(s: Session, anchors: list[int]) -> dict[int, int]:
    """Sales holding an anchor and each other product."""
    mine, other = aliased(SaleLine), aliased(SaleLine)
    rows = s.execute(
        select(other.product_id, func.count(distinct(other.sale_id)))
        .join(mine, mine.sale_id == other.sale_id)
        .where(mine.product_id.in_(anchors), other.product_id.not_in(anchors))
        .group_by(other.product_id)
    )
    return dict(rows.all())


def _tapped_with(s: Session, anchors: list[int]) -> dict[int, int]:
    """Kiosk sessions with a tap of an anchor and of each other product."""
    mine, other = aliased(KioskTap), aliased(KioskTap)
    rows = s.execute(
        select(other.product_id, func.count(distinct(other.kiosk_session_id)))
        .join(mine, mine.kiosk_session_id == other.kiosk_session_id)
        .where(
            mine.product_id.in_(anchors),
            other.product_id.is_not(None),
            other.product_id.not_in(anchors),
        )
        .group_by(other.product_id)
    )
    return dict(rows.all())
