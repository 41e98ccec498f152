"""Stores and their devices."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.services import new_device_secret
from app.core.errors import NotFound
from app.ledger import services as ledger
from app.stores.models import Device, Store


class StoreNotFound(NotFound):
    code = "store_not_found"
    message = "No such store."


class DeviceNotFound(NotFound):
    code = "device_not_found"
    message = "No such device."


def create_store(s: Session, *, code: str, name: str, currency: str, address: str = "") -> Store:
    """A store with its own hot accounts for takings, cash and bank-card payments, in
    ``currency`` (the retailer's)."""

    def account(suffix: str, title: str, type_: str) -> int:
        return ledger.open_account(
            s,
            code=f"store:{code}:{suffix}",
            name=f"{name}: {title}",
            unit=currency,
            type=type_,
            hot=True,
        ).id

    store = Store(
        code=code,
        name=name,
        address=address,
        sales_account_id=account("sales", "sales", "income"),
        cash_account_id=account("cash", "cash in the tills", "asset"),
        bank_card_account_id=account("bank_card", "bank-card payments due", "asset"),
    )
    s.add(store)
    s.flush()
    return store


def register_device(s: Session, *, store_id: int, kind: str, name: str) -> tuple[Device, str]:
    """Register a POS terminal or kiosk to one store. Returns the device and its secret,
    which is shown this once and stored only as a hash. Raises StoreNotFound."""
    if s.get(Store, store_id) is None:
        raise StoreNotFound()
    secret, secret_hash = new_device_secret()
    device = Device(store_id=store_id, kind=kind, name=name, secret_hash=secret_hash)
    s.add(device)
    s.flush()
    return device, secret


def load_device(s: Session, device_id: int) -> Device:
    """Raises DeviceNotFound."""
    device = s.get(Device, device_id)
    if device is None:
        raise DeviceNotFound()
    return device


def deactivate_device(s: Session, device_id: int) -> Device:
    """Raises DeviceNotFound."""
    device = load_device(s, device_id)
    device.active = False
    s.flush()
    return device


def stores(s: Session) -> list[Store]:
    return list(s.scalars(select(Store).order_by(Store.id)))


def load_store(s: Session, store_id: int) -> Store:
    store = s.get(Store, store_id)
    if store is None:
        raise StoreNotFound()
    return store
