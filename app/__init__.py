"""Omnicard: one ledger of card balances and Stars behind every channel."""

from __future__ import annotations

import logging

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.core import api as core_api
from app.core import config, db, headers, limits


def create_app(overrides: dict | None = None) -> Flask:
    """Build the app: configuration first, then each part's ``init_app`` in order."""
    app = Flask(__name__, instance_path=str(config.INSTANCE_DIR))
    app.config.update(config.from_environment())
    app.config.update(overrides or {})
    logging.getLogger("nfc").setLevel(logging.WARNING)
    hops = app.config["TRUSTED_PROXIES"]
    if hops:
        # The client address (logins are throttled by it) as the nearest trusted proxy saw it.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    db.init_app(app)
    limits.init_app(app)
    api = core_api.init_app(app)
    headers.init_app(app)

    from app import demo
    from app.auth import api as auth_api
    from app.auth import cli as auth_cli
    from app.cards import api as cards_api
    from app.catalog import api as catalog_api
    from app.catalog import images as product_images
    from app.core import cli as core_cli
    from app.customers import api as customers_api
    from app.events import api as events_api
    from app.kiosk import analytics_api as kiosk_analytics_api
    from app.kiosk import api as kiosk_api
    from app.kiosk import cli as kiosk_cli
    from app.ledger import cli as ledger_cli
    from app.offline import api as offline_api
    from app.offline import cli as offline_cli
    from app.payments import cli as payments_cli
    from app.sales import api as sales_api
    from app.sales import pages as receipt_pages
    from app.shifts import api as shifts_api
    from app.stores import api as stores_api
    from app.system import api as system_api
    from app.web import cards as web_cards
    from app.web import kiosk as web_kiosk
    from app.web import pages as web_pages
    from app.web import pay as web_pay
    from app.web import products as web_products
    from app.web import pwa as web_pwa
    from app.web import staff as web_staff
    from app.webhooks import api as webhooks_api

    clis = (core_cli, ledger_cli, auth_cli, payments_cli, offline_cli, kiosk_cli, demo)
    for part in (*clis, events_api, webhooks_api, web_pages):
        part.init_app(app)
    for module in (
        system_api,
        auth_api,
        customers_api,
        cards_api,
        sales_api,
        shifts_api,
        offline_api,
        catalog_api,
        stores_api,
        kiosk_api,
        kiosk_analytics_api,
        events_api,
        webhooks_api,
    ):
        api.register_blueprint(module.blp)
    app.register_blueprint(product_images.blp)
    app.register_blueprint(receipt_pages.blp)
    app.register_blueprint(web_pages.blp)
    app.register_blueprint(web_cards.blp)
    app.register_blueprint(web_kiosk.blp)
    app.register_blueprint(web_pay.blp)
    app.register_blueprint(web_products.blp)
    app.register_blueprint(web_staff.blp)
    app.register_blueprint(web_pwa.blp)

    return app
