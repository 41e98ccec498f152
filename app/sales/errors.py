from app.core.errors import DomainError, NotFound


class SaleNotFound(NotFound):
    code = "sale_not_found"
    message = "No such sale in this store."


class TendersDoNotMatchTotal(DomainError):
    code = "tenders_do_not_match_total"
    http_status = 422
    message = "The tenders must add up to the sale's total exactly."


class CardRequired(DomainError):
    code = "card_required"
    http_status = 422
    message = "Paying from a card balance needs the card: present it (number, NFC or pay code)."


class NothingToPay(DomainError):
    code = "nothing_to_pay"
    http_status = 422
    message = "The sale's total is zero."


class RefundExceedsSale(DomainError):
    code = "refund_exceeds_sale"
    http_status = 422
    message = "That is more than is left to refund on this sale."


class NothingToRefund(DomainError):
    code = "nothing_to_refund"
    http_status = 409
    message = "Everything on this sale was refunded already."


class CashGivenShort(DomainError):
    code = "cash_given_short"
    http_status = 422
    message = (
        "The cash handed over must cover its tender, and only a cash tender says what was "
        "handed over."
    )
