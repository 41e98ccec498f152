""" "You might also like" on the kiosk screen: reads the counts kept by app.kiosk.counts and
ranks them with the rules of app.kiosk.ranking.

A call is a handful of indexed reads: the shopper's recent products (when one joined the
session), the pair counts of the seeds, which of the best candidates this store sells, their
taps here and sales elsewhere, and the products themselves with their prices.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Integer, bindparam, case, func, select
from sqlalchemy.orm import Session

from app.catalog.models import Product, StoreProduct
from app.core.types import utcnow
from app.kiosk import ranking
from app.kiosk.models import KioskTap, ProductPairCount, ProductStoreCount
from app.kiosk.services import product_summaries
from app.sales.models import Sale, SaleLine

#: How far back a joined shopper's purchases and taps seed the suggestions.
HISTORY_DAYS = 90
#: At most this many of them, the most recent first.
HISTORY_PRODUCTS = 10
#: How many of a seed's best partners are read, by the seed's source: a product tapped
#: with thousands of others is represented by its strongest ties.
NEIGHBOURS = {"current": 200, "session": 100, "history": 40}


def recent_products(s: Session, customer_id: int, *, now=None) -> list[int]:
    """The products a shopper bought or tapped in the last HISTORY_DAYS, latest first."""
    since = (now or utcnow()) - timedelta(days=HISTORY_DAYS)
    bought = s.execute(
        select(SaleLine.product_id, func.max(Sale.created_at))
        .join(Sale, Sale.id == SaleLine.sale_id)
        .where(Sale.customer_id == customer_id, Sale.created_at >= since)
        .group_by(SaleLine.product_id)
        .order_by(func.max(Sale.created_at).desc(), SaleLine.product_id)
        .limit(HISTORY_PRODUCTS)
    ).all()
    tapped = s.execute(
        select(KioskTap.product_id, func.max(KioskTap.tapped_at))
        .where(
            KioskTap.customer_id == customer_id,
            KioskTap.tapped_at >= since,
            KioskTap.kind == "product",
            KioskTap.product_id.is_not(None),
        )
        .group_by(KioskTap.product_id)
        .order_by(func.max(KioskTap.tapped_at).desc(), KioskTap.product_id)
        .limit(HISTORY_PRODUCTS)
    ).all()
    latest: dict[int, object] = {}
    for pid, at in [*bought, *tapped]:
        if pid not in latest or at > latest[pid]:
            latest[pid] = at
    ordered = sorted(latest, key=lambda pid: (-latest[pid].timestamp(), pid))
    return ordered[:HISTORY_PRODUCTS]


#: A seed's best partners that a store sells: an index range scan on (product_id, score),
#: built once (and compiled once).
BEST_PARTNERS = (
    select(
        ProductPairCount.product_id,
        ProductPairCount.other_id,
        ProductPairCount.bought,
        ProductPairCount.tapped,
    )
    .join(
        StoreProduct,
        (StoreProduct.product_id == ProductPairCount.other_id)
        & (StoreProduct.store_id == bindparam("store_id")),
    )
    .join(Product, Product.id == ProductPairCount.other_id)
    .where(ProductPairCount.product_id == bindparam("seed_id"), Product.active.is_(True))
    .order_by(ProductPairCount.score.desc(), ProductPairCount.other_id)
    .limit(bindparam("neighbours", type_=Integer))
)


def _pairs(s: Session, store_id: int, seeds: list[ranking.Seed]) -> list[ranking.Pair]:
    """Each seed's best partners (by score, at most NEIGHBOURS[its source]) among the
    products this store sells and still sells at all."""
    pairs = []
    for seed in seeds:
        rows = s.execute(
            BEST_PARTNERS,
            {
                "store_id": store_id,
                "seed_id": seed.product_id,
                "neighbours": NEIGHBOURS[seed.source],
            },
        )
        pairs.extend(ranking.Pair(*row) for row in rows)
    return pairs


def _gems(s: Session, store_id: int, product_ids: list[int]) -> dict[int, ranking.GemStats]:
    if not product_ids:
        return {}
    here = ProductStoreCount.store_id == store_id
    rows = s.execute(
        select(
            ProductStoreCount.product_id,
            func.sum(case((here, ProductStoreCount.taps), else_=0)),
            func.sum(case((here, 0), else_=ProductStoreCount.sold)),
        )
        .where(ProductStoreCount.product_id.in_(product_ids))
        .group_by(ProductStoreCount.product_id)
    )
    return {pid: ranking.GemStats(int(taps), int(sold)) for pid, taps, sold in rows}


def suggest(
    s: Session,
    *,
    store_id: int,
    product_id: int | None = None,
    session_product_ids: list[int] | tuple[int, ...] = (),
    customer_id: int | None = None,
    limit: int = 4,
) -> list[dict]:
    """Up to ``limit`` suggestions for a kiosk session at ``store_id`` whose screen shows
    ``product_id``, best first: ``{"product": summary, "reason": {"kind", "product_name"}}``.
    The same history always gives the same answer."""
    history = recent_products(s, customer_id) if customer_id is not None else []
    seeds = ranking.seeds_for(product_id, session_product_ids, history)
    exclude = ranking.excluded(product_id, session_product_ids)
    pairs = _pairs(s, store_id, seeds)
    shortlist = ranking.shortlist(seeds, pairs, exclude)
    ranked = ranking.rank(
        seeds,
        pairs,
        exclude=exclude,
        sold_here=frozenset(pair.other_id for pair in pairs),
        gems=_gems(s, store_id, shortlist),
        limit=limit,
    )
    wanted = {r.product_id for r in ranked} | {r.because_of for r in ranked if r.because_of}
    if not ranked:
        return []
    products = {p.id: p for p in s.scalars(select(Product).where(Product.id.in_(wanted)))}
    summaries = product_summaries(
        s, [products[r.product_id] for r in ranked], store_id=store_id, customer_id=customer_id
    )
    return [
        {
            "product": summary,
            "reason": {
                "kind": r.reason,
                "product_name": products[r.because_of].name if r.because_of else None,
            },
        }
        for r, summary in zip(ranked, summaries, strict=True)
    ]
