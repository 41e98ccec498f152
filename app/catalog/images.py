"""Product pictures: a clean generated tile per product, so every channel has an image to
show before the retailer uploads photography (a product's ``image_url`` may point anywhere)."""

from __future__ import annotations

import hashlib
from html import escape

from flask import Blueprint, Response

from app.catalog import services as catalog
from app.core.db import session
from app.core.errors import NotFound

blp = Blueprint("product_images", __name__, url_prefix="/media/products")

PALETTE = {
    "coffee": ("#00704a", "#d4e9e2"),
    "tea": ("#5b7f3a", "#e8f0d8"),
    "food": ("#b5651d", "#f6e6d3"),
    "beans": ("#3b2416", "#eadbcf"),
    "drinkware": ("#1e3932", "#dfe9e6"),
    "apparel": ("#27251f", "#e9e6df"),
}


def tile_svg(name: str, category: str) -> str:
    ink, paper = PALETTE.get(category, ("#333333", "#eeeeee"))
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:6], 16)
    radius = 60 + seed % 50
    words = name.split()
    lines = [" ".join(words[: (len(words) + 1) // 2]), " ".join(words[(len(words) + 1) // 2 :])]
    text = "".join(
        f'<text x="200" y="{300 + i * 34}" text-anchor="middle">{escape(line)}</text>'
        for i, line in enumerate(lines)
        if line
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400" viewBox="0 0 400 400">'
        f'<rect width="400" height="400" fill="{paper}"/>'
        f'<circle cx="200" cy="150" r="{radius}" fill="{ink}" opacity="0.9"/>'
        f'<g font-family="Helvetica, Arial, sans-serif" font-size="26" fill="{ink}">{text}</g>'
        f'<text x="200" y="385" text-anchor="middle" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="16" fill="{ink}" opacity="0.7">{escape(category)}</text>'
        "</svg>"
    )


@blp.route("/<id:product_id>.svg")
def product_image(product_id: int):
    try:
        product = catalog.load_product(session(), product_id)
    except catalog.ProductNotFound:
        raise NotFound("No such product.") from None
    response = Response(tile_svg(product.name, product.category), mimetype="image/svg+xml")
    response.cache_control.max_age = 3600
    return response
