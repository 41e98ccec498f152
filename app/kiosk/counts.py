"""The co-occurrence counts behind the kiosk's suggestions, kept up to date as taps and sales
are recorded, so that a suggestion is a few indexed reads.

- A product tap, in the tap's transaction: the product's taps in the store +1, and every
  product tapped earlier in the same kiosk session gains one ``tapped`` with it (once per
  session and pair).
- A sale, soon after it commits (``count_new_sales``): the units sold in the store, and one
  ``bought`` for every pair of products in it, and for every product in it with each product
  the same shopper bought in the ``BOUGHT_TOGETHER_DAYS`` before (once per sale and
  pair).

``recount`` computes the same numbers from the whole history (for data that was there
before, and to check the running counts).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from datetime import timedelta
from itertools import combinations

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.kiosk.models import KioskTap, ProductPairCount, ProductStoreCount
from app.kiosk.ranking import BOUGHT_WEIGHT, TAPPED_WEIGHT
from app.sales.models import Sale, SaleLine

#: A shopper's purchases this many days apart count as bought together.
BOUGHT_TOGETHER_DAYS = 7


def _insert(s: Session, model):
    dialect = s.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def add_pairs(s: Session, pairs: Counter, column: str) -> None:
    """Add ``pairs[(a, b)]`` to both (a, b) and (b, a). Rows are written in key order, so two
    transactions adding to the same pairs lock them in the same order."""
    rows: Counter = Counter()
    for (a, b), n in pairs.items():
        if a != b and n:
            rows[(a, b)] += n
            rows[(b, a)] += n
    if not rows:
        return
    weight = {"bought": BOUGHT_WEIGHT, "tapped": TAPPED_WEIGHT}[column]
    values = [
        {"product_id": a, "other_id": b, "bought": 0, "tapped": 0, column: n, "score": weight * n}
        for (a, b), n in sorted(rows.items())
    ]
    stmt = _insert(s, ProductPairCount).values(values)
    table = ProductPairCount.__table__
    s.execute(
        stmt.on_conflict_do_update(
            index_elements=["product_id", "other_id"],
            set_={
                column: table.c[column] + stmt.excluded[column],
                "score": table.c.score + stmt.excluded.score,
            },
        )
    )


def add_product_counts(s: Session, store_id: int, counts: Counter, column: str) -> None:
    if not counts:
        return
    values = [
        {"product_id": pid, "store_id": store_id, "taps": 0, "sold": 0, column: n}
        for pid, n in sorted(counts.items())
    ]
    stmt = _insert(s, ProductStoreCount).values(values)
    table = ProductStoreCount.__table__
    s.execute(
        stmt.on_conflict_do_update(
            index_elements=["product_id", "store_id"],
            set_={column: table.c[column] + stmt.excluded[column]},
        )
    )


def record_tap(s: Session, tap: KioskTap) -> None:
    """Count a product tap (other kinds count for nothing). Call once per new tap row."""
    if tap.kind != "product" or tap.product_id is None:
        return
    s.flush()
    add_product_counts(s, tap.store_id, Counter({tap.product_id: 1}), "taps")
    earlier = set(
        s.scalars(
            select(KioskTap.product_id).where(
                KioskTap.kiosk_session_id == tap.kiosk_session_id,
                KioskTap.product_id.is_not(None),
                KioskTap.kind == "product",
                KioskTap.id != tap.id,
            )
        )
    )
    if tap.product_id in earlier:
        return  # this session counted its pairs the first time
    add_pairs(s, Counter({(tap.product_id, other): 1 for other in earlier}), "tapped")


def _pairs_of_sale(products: set[int], before: set[int]) -> set[tuple[int, int]]:
    """The unordered pairs one sale adds: within it, and with what its shopper bought lately."""
    pairs = {tuple(sorted(p)) for p in combinations(products, 2)}
    pairs |= {tuple(sorted((p, q))) for p in products for q in before if p != q}
    return pairs


def count_new_sales(s: Session, *, most: int = 2_000) -> int:
    """Count the sales not counted yet (at most ``most``, oldest first): how many.

    Sales are counted after they commit, not inside them: a sale's own transaction stays as
    short as the ledger's, and a popular product's count row is never a lock that every till
    waits on. Sales another transaction is counting (or refunding) are left for the next
    call. Called before suggestions are made and, at most once a second, by each app process
    after a sale (app.sales.api)."""
    new = s.execute(
        select(Sale.id, Sale.store_id, Sale.customer_id, Sale.created_at)
        .where(Sale.kiosk_counted.is_(False))
        .order_by(Sale.id)
        .limit(most)
        .with_for_update(skip_locked=True)
    ).all()
    if not new:
        return 0
    ids = [sale.id for sale in new]
    sold: dict[int, Counter] = {}
    for store_id, product_id, quantity in s.execute(
        select(Sale.store_id, SaleLine.product_id, SaleLine.quantity)
        .join(Sale, Sale.id == SaleLine.sale_id)
        .where(Sale.id.in_(ids))
    ):
        sold.setdefault(store_id, Counter())[product_id] += quantity
    for store_id, units in sorted(sold.items()):
        add_product_counts(s, store_id, units, "sold")
    add_pairs(s, _pairs_of_new_sales(s, new), "bought")
    s.execute(update(Sale).where(Sale.id.in_(ids)).values(kiosk_counted=True))
    return len(new)


def _pairs_of_new_sales(s: Session, new) -> Counter:
    """The pairs the ``new`` sales add: within each, and with what its shopper bought in the
    days before (their earlier sales, counted or not).

    Before the first new sale, a shopper's purchases are read as each product's latest time
    only: a product was bought in the days before a later sale exactly when its latest
    purchase was. So the work grows with the new sales and their shoppers' products, not
    with how often those shoppers bought them."""
    days = BOUGHT_TOGETHER_DAYS
    shoppers = {sale.customer_id for sale in new if sale.customer_id is not None}
    first = min(sale.created_at for sale in new)
    last = max(sale.created_at for sale in new)
    bought = (
        select(Sale.customer_id, SaleLine.product_id)
        .join(SaleLine, SaleLine.sale_id == Sale.id)
        .where(Sale.customer_id.in_(shoppers))
    )
    earlier = s.execute(
        bought.add_columns(func.max(Sale.created_at))
        .where(Sale.created_at >= first - timedelta(days=days), Sale.created_at < first)
        .group_by(Sale.customer_id, SaleLine.product_id)
    ).all()
    since_first = s.execute(
        select(Sale.id, Sale.customer_id, Sale.created_at, SaleLine.product_id)
        .join(SaleLine, SaleLine.sale_id == Sale.id)
        .where(
            or_(
                Sale.id.in_([sale.id for sale in new]),
                and_(Sale.customer_id.in_(shoppers), Sale.created_at >= first,
                     Sale.created_at <= last),
            )
        )
    ).all()  # fmt: skip
    # Each earlier product as a purchase of its own (ids below any sale's), then every sale
    # since, in the order _sale_pairs reads them.
    rows = [(-n, customer_id, at, product_id)
            for n, (customer_id, product_id, at) in enumerate(earlier, start=1)]  # fmt: skip
    rows += since_first
    rows.sort(key=lambda row: (row[1] is None, row[1] or 0, row[2], row[0]))
    return _sale_pairs(rows, days, counting={sale.id for sale in new})


def _sale_pairs(
    rows: Iterable[tuple[int, int | None, object, int]], days: int, counting: set | None = None
) -> Counter:
    """``rows`` of (sale id, customer id, time, product id) ordered by customer, time, sale;
    the pairs of the sales in ``counting`` (of every sale when None), the others being only
    what their shoppers bought before. One pass: each shopper's last ``days`` of products are
    kept as a sliding window of counts."""
    pairs: Counter = Counter()
    span = timedelta(days=days)
    window: deque[tuple[object, set[int]]] = deque()  # this shopper's sales still in reach
    in_window: Counter = Counter()  # the products of those sales
    current_customer = object()
    sale: tuple | None = None

    def close(sale):
        sale_id, customer_id, at, products = sale
        before: set[int] = set()
        if customer_id is not None:
            while window and window[0][0] < at - span:
                in_window.subtract(window.popleft()[1])
            before = {p for p, n in in_window.items() if n > 0}
            window.append((at, products))
            in_window.update(products)
        if counting is None or sale_id in counting:
            pairs.update(_pairs_of_sale(products, before))

    for sale_id, customer_id, at, product_id in rows:
        if sale is None or sale[0] != sale_id:
            if sale is not None:
                close(sale)
            if customer_id != current_customer:
                window.clear()
                in_window.clear()
                current_customer = customer_id
            sale = (sale_id, customer_id, at, set())
        sale[3].add(product_id)
    if sale is not None:
        close(sale)
    return pairs


def recount(s: Session) -> None:
    """Rebuild every count from the recorded taps and sales."""
    s.execute(delete(ProductPairCount))
    s.execute(delete(ProductStoreCount))
    s.flush()
    tapped: Counter = Counter()
    session_id, products = None, set()
    taps_per_store: dict[int, Counter] = {}
    for sid, store_id, product_id in s.execute(
        select(KioskTap.kiosk_session_id, KioskTap.store_id, KioskTap.product_id)
        .where(KioskTap.kind == "product", KioskTap.product_id.is_not(None))
        .order_by(KioskTap.kiosk_session_id, KioskTap.id)
        .execution_options(yield_per=20_000)
    ):
        taps_per_store.setdefault(store_id, Counter())[product_id] += 1
        if sid != session_id:
            session_id, products = sid, set()
        if product_id not in products:
            tapped.update(tuple(sorted((product_id, q))) for q in products)
            products.add(product_id)
    sold_per_store: dict[int, Counter] = {}
    for store_id, product_id, quantity in s.execute(
        select(Sale.store_id, SaleLine.product_id, SaleLine.quantity)
        .join(Sale, Sale.id == SaleLine.sale_id)
        .execution_options(yield_per=20_000)
    ):
        sold_per_store.setdefault(store_id, Counter())[product_id] += quantity
    bought = _sale_pairs(
        s.execute(
            select(Sale.id, Sale.customer_id, Sale.created_at, SaleLine.product_id)
            .join(SaleLine, SaleLine.sale_id == Sale.id)
            .order_by(Sale.customer_id, Sale.created_at, Sale.id)
            .execution_options(yield_per=20_000)
        ),
        BOUGHT_TOGETHER_DAYS,
    )
    _insert_all(s, tapped, bought, taps_per_store, sold_per_store)
    s.execute(update(Sale).where(Sale.kiosk_counted.is_(False)).values(kiosk_counted=True))
    s.flush()


CHUNK = 5_000


def _insert_all(s: Session, tapped: Counter, bought: Counter, taps: dict, sold: dict) -> None:
    """Plain inserts into the emptied tables: each row once, both ways for the pairs."""
    pairs: dict[tuple[int, int], list[int]] = {}
    for column, counter in ((0, bought), (1, tapped)):
        for (a, b), n in counter.items():
            for key in ((a, b), (b, a)):
                pairs.setdefault(key, [0, 0])[column] += n
    rows = [
        {
            "product_id": a,
            "other_id": b,
            "bought": n[0],
            "tapped": n[1],
            "score": BOUGHT_WEIGHT * n[0] + TAPPED_WEIGHT * n[1],
        }
        for (a, b), n in sorted(pairs.items())
    ]
    for i in range(0, len(rows), CHUNK):
        s.execute(insert(ProductPairCount), rows[i : i + CHUNK])
    products: dict[tuple[int, int], list[int]] = {}
    for column, per_store in ((0, taps), (1, sold)):
        for store_id, counter in per_store.items():
            for product_id, n in counter.items():
                products.setdefault((product_id, store_id), [0, 0])[column] += n
    rows = [
        {"product_id": p, "store_id": st, "taps": n[0], "sold": n[1]}
        for (p, st), n in sorted(products.items())
    ]
    for i in range(0, len(rows), CHUNK):
        s.execute(insert(ProductStoreCount), rows[i : i + CHUNK])
