"""Omnicard: one ledger of card balances and Stars behind every channel."""

from __future__ import annotations

import logging

from flask import Flask, g

from app.core import api as core_api
from app.core import config, db


def create_app(overrides: dict | None = None) -> Flask:
    """Build the app: configuration first, then each part's ``init_app`` in order."""
    app = Flask(__name__, instance_path=str(config.INSTANCE_DIR))
    app.config.update(config.from_environment())
    app.config.update(overrides or {})
    logging.getLogger("nfc").setLevel(logging.WARNING)

    db.init_app(app)
    api = core_api.init_app(app)

    from app import demo
    from app.core import cli as core_cli
    from app.ledger import cli as ledger_cli
    from app.system import api as system_api

    core_cli.init_app(app)
    ledger_cli.init_app(app)
    demo.init_app(app)
    api.register_blueprint(system_api.blp)

    @app.after_request
    def _commit_or_roll_back(response):
        # The request commits once, at the end, and only if it succeeded.
        s = g.get("db_session")
        if s is not None:
            if response.status_code < 400:
                s.commit()
            else:
                s.rollback()
        return response

    return app
