"""``flask kiosk pairing-code DEVICE_ID``: a code for a kiosk's screen, for staff at a desk;
``flask kiosk recount``: the suggestions' counts rebuilt from history."""

import click
from flask import Flask
from flask.cli import AppGroup

from app.core.db import session
from app.core.settings import settings
from app.kiosk import services as kiosk
from app.stores.models import Device

kiosk_cli = AppGroup("kiosk", help="NFC product kiosks.")


@kiosk_cli.command("pairing-code")
@click.argument("device_id", type=int)
def pairing_code_command(device_id: int) -> None:
    """Print a one-use code that pairs a screen to the kiosk DEVICE_ID (valid ten minutes)."""
    s = session()
    device = s.get(Device, device_id)
    if device is None or device.kind != "kiosk" or not device.active:
        raise click.BadParameter(f"no active kiosk with id {device_id}", param_hint="DEVICE_ID")
    code, row = kiosk.new_pairing_code(s, device, settings().kiosk_pairing_code_ttl_s)
    s.commit()
    click.echo(f"{code}  (kiosk {device.id} {device.name!r}, until {row.expires_at:%H:%M} UTC)")


@kiosk_cli.command("recount")
def recount_command() -> None:
    """Rebuild the suggestions' co-occurrence counts from every recorded tap and sale (for
    history recorded before they were kept)."""
    from app.kiosk import counts

    s = session()
    counts.recount(s)
    s.commit()
    click.echo("kiosk suggestion counts rebuilt")


def init_app(app: Flask) -> None:
    app.cli.add_command(kiosk_cli)
