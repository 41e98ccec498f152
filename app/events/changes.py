"""The events each kind of change writes, with the new state in the payload.

Called by the domain services inside their transaction, right after the change itself.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.core.schemas import money
from app.events.outbox import emit

#: Every event type a channel or a webhook may receive.
EVENT_TYPES = (
    "card.added",
    "card.balance_changed",
    "card.presented",
    "card.status_changed",
    "refund.completed",
    "sale.completed",
    "stars.changed",
    "top_up.settled",
)


def card_balance_changed(
    s: Session, card, balance: int, currency: str, *, reason: str, transaction_id: int,
    store_id: int | None = None,
) -> None:  # fmt: skip
    emit(
        s,
        "card.balance_changed",
        {
            "card_id": card.id,
            "last4": card.last4,
            "balance": money(balance, currency),
            "reason": reason,
            "transaction_id": transaction_id,
        },
        customer_id=card.customer_id,
        card_id=card.id,
        store_id=store_id,
    )


def card_status_changed(s: Session, card, *, replaced_by_id: int | None = None) -> None:
    emit(
        s,
        "card.status_changed",
        {"card_id": card.id, "last4": card.last4, "status": card.status,
         "replaced_by_id": replaced_by_id},
        customer_id=card.customer_id,
        card_id=card.id,
    )  # fmt: skip


def card_added(s: Session, card) -> None:
    emit(
        s,
        "card.added",
        {"card_id": card.id, "last4": card.last4, "kind": card.kind, "primary": card.is_primary},
        customer_id=card.customer_id,
        card_id=card.id,
    )


def stars_changed(s: Session, customer_id: int, stars: int, *, reason: str) -> None:
    emit(s, "stars.changed", {"stars": stars, "reason": reason}, customer_id=customer_id)


def card_presented(s: Session, card, *, device_id: int, store_id: int, how: str) -> None:
    """A card was shown at a till: that till now watches it for a while."""
    emit(
        s,
        "card.presented",
        {"card_id": card.id, "last4": card.last4, "how": how, "device_id": device_id},
        device_id=device_id,
        card_id=card.id,
    )


def sale_completed(s: Session, sale, card_balance: int | None) -> None:
    emit(
        s,
        "sale.completed",
        {
            "sale_id": sale.id,
            "store_id": sale.store_id,
            "device_id": sale.device_id,
            "card_id": sale.card_id,
            "total": money(sale.total_minor, sale.currency),
            "stars_earned": sale.stars_earned,
            "card_balance": money(card_balance, sale.currency) if card_balance is not None
            else None,
        },
        customer_id=sale.customer_id,
        store_id=sale.store_id,
        card_id=sale.card_id,
    )  # fmt: skip


def refund_completed(s: Session, refund, sale) -> None:
    emit(
        s,
        "refund.completed",
        {
            "refund_id": refund.id,
            "sale_id": sale.id,
            "amount": money(refund.amount_minor, sale.currency),
            "stars_taken_back": refund.stars_taken_back,
            "stars_owed": refund.stars_owed,
        },
        customer_id=sale.customer_id,
        store_id=sale.store_id,
        card_id=sale.card_id,
    )


def top_up_settled(s: Session, top_up, card) -> None:
    emit(
        s,
        "top_up.settled",
        {
            "top_up_id": top_up.id,
            "card_id": card.id,
            "status": top_up.status,
            "amount": money(top_up.amount_minor, top_up.currency),
            "decline_code": top_up.decline_code,
        },
        customer_id=card.customer_id,
        card_id=card.id,
        store_id=top_up.store_id,
    )
