"""Product pages: ``/p/<SKU>``, the address the stores' NFC tags and shelf signs carry, so a
phone that taps one opens the product. Public: a shopper need not be logged in.

The price comes from the one pricing function (app.catalog.pricing), for the website's
channel and, when a shopper is signed in, for them; the page's script formats it in the
shopper's language, like every sum of money on the site.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint

from app.catalog import services as catalog
from app.catalog.models import Product
from app.catalog.pricing import ListPrice, price_cart
from app.catalog.services import ProductNotFound
from app.core.db import session
from app.core.types import utcnow
from app.web import session as web_session
from app.web.pages import render_page

blp = Blueprint("web_products", __name__, template_folder="templates")

LOCAL_PICTURES = "/media/products/"


def picture_url(product: Product) -> str:
    """Where the page loads the product's picture from: the page may load pictures from this
    site only (its Content-Security-Policy), so a picture elsewhere gives way to the
    generated tile. A whole URL of the product's own tile is kept as a path (the demo stores
    whole URLs, which name the host it was loaded for)."""
    tile = f"{LOCAL_PICTURES}{product.id}.svg"
    parts = urlsplit(product.image_url or "")
    if parts.path == tile:
        return tile
    if not parts.scheme and not parts.netloc and parts.path.startswith("/"):
        return parts.path
    return tile


def price_now(product: Product, customer_id: int | None) -> dict:
    """The product's price for this shopper on the website now, and its list price."""
    cart = price_cart(
        [(product.sku, 1)],
        {product.sku: ListPrice(product.id, product.sku, product.name, product.price_minor,
                                product.currency)},
        currency=product.currency,
        customer_id=customer_id,
        channel="web",
        store_id=None,
        at=utcnow(),
    )  # fmt: skip
    return {
        "price": {"amount": cart.total_minor, "currency": cart.currency},
        "list_price": {"amount": product.price_minor, "currency": product.currency},
    }


@blp.get("/p/", defaults={"sku": ""})
@blp.get("/p/<sku>")
def product_page(sku: str):
    s = session()
    try:
        product = catalog.active_product_by_sku(s, sku)
    except ProductNotFound:
        return render_page("web/product_missing.html", sku=sku), 404
    customer_id = web_session.signed_in_customer_id()
    return render_page(
        "web/product.html",
        product=product,
        picture=picture_url(product),
        prices=price_now(product, customer_id),
        personal=customer_id is not None,
        stores=catalog.stores_selling(s, product.id),
    )


@blp.after_request
def pages_are_not_stored(response):
    """As every page of the site: a signed-in shopper's page carries their CSRF token and
    price (the offline copy is the service worker's, in the shopper's browser only)."""
    response.headers.setdefault("Cache-Control", "no-store")
    return response
