"""What the kiosk's API refuses, each with a stable code."""

from app.core.errors import Conflict, DomainError, NotFound


class KioskSessionNotFound(NotFound):
    code = "kiosk_session_not_found"
    message = "This kiosk has no such session."


class SessionOver(Conflict):
    code = "session_over"
    message = "This kiosk session is over: tap the card again to start a new one."


class NoShopper(Conflict):
    code = "no_shopper"
    message = "No shopper has joined this kiosk session: tap a loyalty card first."


class PairingCodeInvalid(DomainError):
    code = "pairing_code_invalid"
    http_status = 422
    message = "That pairing code is unknown, used or expired: ask for a new one at the kiosk."


class NotSaved(NotFound):
    code = "not_saved"
    message = "That product is not in your saved list."
