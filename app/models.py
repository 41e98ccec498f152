"""Every table of Omnicard, imported in one place for Alembic and the tests."""

from app.auth.models import AuthToken, Staff
from app.cards.models import AutoReload, Card, CardBatch, PayCode
from app.catalog.models import Product, ProductTag, StoreProduct
from app.core.db import Base
from app.core.idempotency import IdempotencyRecord
from app.core.throttle import FailedAttempt
from app.customers.models import Customer
from app.events.models import Event, OutboxEntry
from app.kiosk.models import KioskPairingCode, KioskSession, KioskTap, SavedProduct
from app.ledger.models import Account, BalanceShard, LedgerTransaction, Posting
from app.offline.models import OfflineAllowance, OfflineRefusal
from app.payments.models import TopUp
from app.sales.models import Receipt, Refund, Sale, SaleLine, SaleTender
from app.shifts.models import Shift
from app.stores.models import Device, Store
from app.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

metadata = Base.metadata

__all__ = [
    "Account",
    "AuthToken",
    "AutoReload",
    "BalanceShard",
    "Card",
    "CardBatch",
    "Customer",
    "Device",
    "Event",
    "FailedAttempt",
    "IdempotencyRecord",
    "KioskPairingCode",
    "KioskSession",
    "KioskTap",
    "LedgerTransaction",
    "OfflineAllowance",
    "OfflineRefusal",
    "OutboxEntry",
    "PayCode",
    "Posting",
    "Product",
    "ProductTag",
    "Receipt",
    "Refund",
    "Sale",
    "SaleLine",
    "SaleTender",
    "SavedProduct",
    "Shift",
    "Staff",
    "Store",
    "StoreProduct",
    "TopUp",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
    "metadata",
]
