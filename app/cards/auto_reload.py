"""A card's auto-reload: "when this card drops below ``threshold``, add ``amount``" from a
saved bank card, set and turned off by its shopper (app.payments.services fires it after the
sale that took the balance below the threshold)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.cards.errors import AmountOutOfRange, AutoReloadNotSet
from app.cards.models import AutoReload, Card
from app.core.settings import Settings


def auto_reload_of(s: Session, card: Card) -> AutoReload:
    """Raises AutoReloadNotSet."""
    rule = s.get(AutoReload, card.id)
    if rule is None:
        raise AutoReloadNotSet()
    return rule


def set_auto_reload(
    s: Session,
    settings: Settings,
    card: Card,
    *,
    threshold_minor: int,
    amount_minor: int,
    payment_token: str,
    enabled: bool,
) -> AutoReload:
    """Set (or change) the card's auto-reload. Its amount is a top-up's, within the
    settings' limits. Raises AmountOutOfRange."""
    low, high = settings.topup_min_minor, settings.topup_max_minor
    if not low <= amount_minor <= high:
        raise AmountOutOfRange(minimum=low, maximum=high)
    rule = s.get(AutoReload, card.id) or AutoReload(card_id=card.id)
    rule.threshold_minor = threshold_minor
    rule.amount_minor = amount_minor
    rule.payment_token = payment_token
    rule.enabled = enabled
    s.add(rule)
    s.flush()
    return rule


def turn_off_auto_reload(s: Session, card: Card) -> None:
    """Forget the card's auto-reload and its saved payment token (none set: nothing to do)."""
    rule = s.get(AutoReload, card.id)
    if rule is not None:
        s.delete(rule)
        s.flush()
