from app.core.errors import DomainError


class UnbalancedTransaction(DomainError):
    code = "unbalanced_transaction"
    http_status = 422
    message = "The postings of a transaction must sum to zero in every unit."


class InvalidPosting(DomainError):
    code = "invalid_posting"
    http_status = 422
    message = "A posting must move a whole, non-zero amount."


class UnitMismatch(DomainError):
    code = "unit_mismatch"
    http_status = 422
    message = "A posting's unit must be its account's unit."


class AccountNotFound(DomainError):
    code = "account_not_found"
    http_status = 404
    message = "No such ledger account."


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    http_status = 409
    message = "The balance is too low for this."


class BalanceLimitExceeded(DomainError):
    code = "balance_limit_exceeded"
    http_status = 409
    message = "This would take the balance above its maximum."


class AccountFrozen(DomainError):
    code = "account_frozen"
    http_status = 409
    message = "This account is frozen and takes no more postings."
