from app.core.errors import DomainError, NotFound


class PaymentDeclined(DomainError):
    code = "payment_declined"
    http_status = 402
    message = "The bank card was declined; no money moved."


class TopUpNotLoaded(DomainError):
    code = "top_up_not_loaded"
    http_status = 409
    message = "The card could not take this top-up; the charge was given back."


class TopUpNotFound(NotFound):
    code = "top_up_not_found"
    message = "No such top-up."
