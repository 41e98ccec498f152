"""The payment gateway that charges a shopper's bank card for a top-up.

Omnicard never sees a card number: the app or website hands the card to the processor's own
form and gets back a token, which is all Omnicard stores and sends.

``SandboxGateway`` behaves like a processor's test mode, with no network and no state:
``tok_visa`` approves, ``tok_chargeDeclined`` declines, ``tok_timeout`` times out after the
processor has in fact charged (the ambiguous case a real integration must survive: asking
again with the same reference later finds the charge approved); ``tok_unreachable`` times out
before the processor ever sees the charge (asking later finds nothing). Any other token is
declined as ``invalid_payment_token``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from flask import current_app


class GatewayTimeout(Exception):
    """No answer in time: the charge may or may not have happened. Ask again later."""


@dataclass(frozen=True)
class ChargeResult:
    approved: bool
    processor_ref: str | None = None
    decline_code: str | None = None


class PaymentGateway(Protocol):
    def charge(
        self, *, reference: str, token: str, amount_minor: int, currency: str
    ) -> ChargeResult:
        """Charge once per ``reference`` (a repeat returns the first outcome).

        Raises GatewayTimeout."""

    def lookup(self, *, reference: str, token: str) -> ChargeResult | None:
        """The outcome of an earlier charge, or None if the processor never saw it.

        Raises GatewayTimeout."""

    def refund(self, *, reference: str, processor_ref: str, amount_minor: int) -> None:
        """Give back a charge that could not be loaded onto the card. Raises GatewayTimeout."""


class SandboxGateway:
    APPROVE = "tok_visa"
    DECLINE = "tok_chargeDeclined"
    TIMEOUT = "tok_timeout"
    UNREACHABLE = "tok_unreachable"

    def charge(
        self, *, reference: str, token: str, amount_minor: int, currency: str
    ) -> ChargeResult:
        if token in (self.TIMEOUT, self.UNREACHABLE):
            raise GatewayTimeout(reference)
        return self._outcome(reference, token)

    def lookup(self, *, reference: str, token: str) -> ChargeResult | None:
        if token == self.UNREACHABLE:
            return None
        return self._outcome(reference, token)

    def refund(self, *, reference: str, processor_ref: str, amount_minor: int) -> None:
        return None

    def _outcome(self, reference: str, token: str) -> ChargeResult:
        if token in (self.APPROVE, self.TIMEOUT):
            ref = "ch_sandbox_" + hashlib.sha256(reference.encode()).hexdigest()[:20]
            return ChargeResult(approved=True, processor_ref=ref)
        if token == self.DECLINE:
            return ChargeResult(approved=False, decline_code="card_declined")
        return ChargeResult(approved=False, decline_code="invalid_payment_token")


GATEWAYS = {"sandbox": SandboxGateway}


def gateway() -> PaymentGateway:
    name = current_app.config["PAYMENT_GATEWAY"]
    cached = current_app.extensions.get("omnicard.gateway")
    if cached is None:
        cached = current_app.extensions["omnicard.gateway"] = GATEWAYS[name]()
    return cached
