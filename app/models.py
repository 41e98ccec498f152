"""Every table of Omnicard, imported in one place for Alembic and the tests."""

from app.core.db import Base
from app.core.idempotency import IdempotencyRecord
from app.ledger.models import Account, BalanceShard, LedgerTransaction, Posting

metadata = Base.metadata

__all__ = [
    "Account",
    "BalanceShard",
    "IdempotencyRecord",
    "LedgerTransaction",
    "Posting",
    "metadata",
]
