"""``flask staff create``: staff accounts are made here, not through the API."""

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.exc import IntegrityError

from app.auth import services as auth
from app.auth.errors import WeakPassword
from app.core.db import session
from app.core.settings import settings
from app.stores.models import Store

staff_cli = AppGroup("staff", help="Staff accounts.")


@staff_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(["admin", "cashier"]), required=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="OMNICARD_STAFF_PASSWORD",
    help="Prompted for unless given by env.",
)
@click.option("--staff-code", default=None, help="What a cashier types on the till.")
@click.option("--pin", default=None, envvar="OMNICARD_STAFF_PIN", help="4-8 digits.")
@click.option("--store-id", type=int, default=None, help="A cashier's store.")
def create_command(email, name, role, password, staff_code, pin, store_id) -> None:
    """Create a staff member (an admin, or a cashier of one store)."""
    if pin is not None and not (pin.isdigit() and 4 <= len(pin) <= 8):
        raise click.BadParameter("4 to 8 digits", param_hint="--pin")
    if role == "cashier" and (staff_code is None or pin is None or store_id is None):
        raise click.UsageError("a cashier needs --staff-code, --pin and --store-id")
    s = session()
    if store_id is not None and s.get(Store, store_id) is None:
        raise click.BadParameter(f"no store with id {store_id}", param_hint="--store-id")
    try:
        staff = auth.create_staff(
            s, settings(), email=email, name=name, role=role, password=password,
            staff_code=staff_code, pin=pin, store_id=store_id,
        )  # fmt: skip
        s.commit()
    except IntegrityError:
        s.rollback()
        raise click.ClickException("that email or staff code is taken") from None
    except WeakPassword as weak:
        s.rollback()
        raise click.BadParameter(weak.message, param_hint="--password") from None
    click.echo(f"created {role} {staff.email} (id {staff.id})")


def init_app(app: Flask) -> None:
    app.cli.add_command(staff_cli)
