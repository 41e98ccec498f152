from app.core.errors import DomainError, NotFound


class CardNotFound(NotFound):
    code = "card_not_found"
    message = "No such card."


class AutoReloadNotSet(NotFound):
    code = "auto_reload_not_set"
    message = "This card has no auto-reload."


class CardFrozen(DomainError):
    code = "card_frozen"
    http_status = 409
    message = "This card is frozen and cannot be used."


class InvalidCardDetails(DomainError):
    code = "invalid_card_details"
    http_status = 422
    message = "That card number and security code do not match a card that can be registered."


class NfcUidInUse(DomainError):
    code = "nfc_uid_in_use"
    http_status = 409
    message = "That NFC tag is bound to another card already."


class InvalidNfcUid(DomainError):
    code = "invalid_nfc_uid"
    http_status = 422
    message = "An NFC UID is 4 to 10 bytes of hex."


class PayCodeInvalid(DomainError):
    code = "pay_code_invalid"
    http_status = 422
    message = "That pay code is unknown, used or expired: ask the shopper to refresh it."


class CustomerNotIdentified(DomainError):
    code = "customer_not_identified"
    http_status = 422
    message = "No card matches what was presented."


class NfcLimitExceeded(DomainError):
    code = "nfc_limit_exceeded"
    http_status = 409
    message = "An NFC tap alone can pay only a small amount: scan the app's pay code or the card."


class SameCard(DomainError):
    code = "same_card"
    http_status = 422
    message = "Choose a different card to move the balance to."


class CurrencyMismatch(DomainError):
    code = "currency_mismatch"
    http_status = 422
    message = "Amounts must be in the card's currency."


class AmountOutOfRange(DomainError):
    code = "amount_out_of_range"
    http_status = 422
    message = "The amount is outside what is allowed."


class CardInactive(DomainError):
    code = "card_inactive"
    http_status = 409
    message = "This gift card has not been sold yet."


class CardAlreadySold(DomainError):
    code = "card_already_sold"
    http_status = 409
    message = "This gift card has been sold already: top it up instead."


class NotAGiftCard(DomainError):
    code = "not_a_gift_card"
    http_status = 422
    message = "Only a physical gift card can be sold at the till."
