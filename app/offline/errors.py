from app.core.errors import DomainError, NotFound


class AllowanceNotFound(NotFound):
    code = "allowance_not_found"
    message = "No such offline allowance at this till."


class AllowanceReleased(DomainError):
    code = "allowance_released"
    http_status = 409
    message = "This offline allowance was released already."


class OfflineSaleRefused(DomainError):
    """An offline sale the server will not take: recorded in ``offline_refusals``."""

    http_status = 422


class AllowanceInvalid(OfflineSaleRefused):
    code = "allowance_invalid"
    message = "This offline allowance was not issued to this till for this card."


class AllowanceExpired(OfflineSaleRefused):
    code = "allowance_expired"
    message = "The sale was made after its offline allowance had expired or been released."


class AllowanceExhausted(OfflineSaleRefused):
    code = "allowance_exhausted"
    message = "The sale takes more from the card than is left of its offline allowance."


class AllowanceRequired(OfflineSaleRefused):
    code = "allowance_required"
    message = "An offline sale paid from a card balance needs the card's offline allowance."
