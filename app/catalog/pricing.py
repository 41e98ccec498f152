"""The one pricing function: what a cart costs this customer, in this channel and store, now.

Every channel (the till, the website, the app, the kiosk) asks this function, so they always
agree. Today a price is the catalog's list price; promotions will come in here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ListPrice:
    product_id: int
    sku: str
    name: str
    price_minor: int
    currency: str


@dataclass(frozen=True)
class PricedLine:
    product_id: int
    sku: str
    name: str
    quantity: int
    unit_price_minor: int
    line_total_minor: int


@dataclass(frozen=True)
class PricedCart:
    lines: tuple[PricedLine, ...]
    total_minor: int
    currency: str


def price_cart(
    lines: Sequence[tuple[str, int]],
    prices: Mapping[str, ListPrice],
    *,
    currency: str,
    customer_id: int | None,
    channel: str,
    store_id: int | None,
    at: datetime,
) -> PricedCart:
    """Price ``lines`` of (sku, quantity); every SKU must be in ``prices``."""
    priced = []
    for sku, quantity in lines:
        price = prices[sku]
        priced.append(
            PricedLine(
                product_id=price.product_id,
                sku=sku,
                name=price.name,
                quantity=quantity,
                unit_price_minor=price.price_minor,
                line_total_minor=price.price_minor * quantity,
            )
        )
    return PricedCart(
        lines=tuple(priced),
        total_minor=sum(line.line_total_minor for line in priced),
        currency=currency,
    )
