"""Demo data for a first look: loaded once by ``flask demo load`` (the README's run command)."""

from __future__ import annotations

import json

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import select

from app.core.config import INSTANCE_DIR
from app.core.db import session
from app.ledger import services as ledger
from app.ledger.models import Account
from app.ledger.rules import Leg

demo_cli = AppGroup("demo", help="Demo data.")


def load_demo() -> dict:
    s = session()
    if s.scalar(select(Account.id).where(Account.code == "demo:loaded")) is None:
        currency = current_app.config["CURRENCY"]
        ledger.open_account(
            s, code="demo:loaded", name="Demo data marker", unit=currency, type="equity"
        )
        clearing = ledger.open_account(
            s,
            code="clearing:top_ups",
            name="Top-up clearing",
            unit=currency,
            type="asset",
            hot=True,
        )
        sales = ledger.open_account(
            s, code="store:1:sales", name="Store 1 sales", unit=currency, type="income", hot=True
        )
        card = ledger.open_account(
            s,
            code="card:demo",
            name="Demo shopper's card",
            unit=currency,
            type="liability",
            no_negative=True,
            max_balance=50_000,
        )
        ledger.post(
            s,
            kind="top_up",
            channel="app",
            legs=[Leg(clearing.id, -2_500, currency), Leg(card.id, 2_500, currency)],
        )
        ledger.post(
            s,
            kind="sale",
            channel="pos",
            legs=[Leg(card.id, -450, currency), Leg(sales.id, 450, currency)],
        )
        s.commit()
    info = {"note": "Demo ledger: a card topped up with 25.00 and a 4.50 sale in store 1."}
    INSTANCE_DIR.mkdir(exist_ok=True)
    (INSTANCE_DIR / "demo.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


@demo_cli.command("load")
def load_command() -> None:
    """Load the demo data unless it is there already, and write instance/demo.json."""
    info = load_demo()
    click.echo(json.dumps(info, indent=2))


def init_app(app: Flask) -> None:
    app.cli.add_command(demo_cli)
