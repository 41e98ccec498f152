"""Finding top-ups: the one a shopper began under an idempotency key (a retry resumes it),
and a shopper's own by its id."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cards.models import Card
from app.payments.errors import TopUpNotFound
from app.payments.models import TopUp


def begun_under(s: Session, principal: str, idempotency_key: str) -> TopUp | None:
    """The top-up that ``principal`` (its key) began under ``idempotency_key``, if any."""
    return s.scalar(
        select(TopUp).where(TopUp.principal == principal, TopUp.idempotency_key == idempotency_key)
    )


def shoppers_top_up(s: Session, top_up_id: int, customer_id: int) -> tuple[TopUp, Card]:
    """A top-up of the shopper's own, and its card. Raises TopUpNotFound for anyone else's:
    no hint it exists."""
    top_up = s.get(TopUp, top_up_id)
    if top_up is None:
        raise TopUpNotFound()
    card = s.get(Card, top_up.card_id)
    if card.customer_id != customer_id:
        raise TopUpNotFound()
    return top_up, card
