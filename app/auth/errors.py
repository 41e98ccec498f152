from app.core.errors import DomainError


class Unauthenticated(DomainError):
    code = "unauthenticated"
    http_status = 401
    message = "Send a valid token: Authorization: Bearer <token>."


class Forbidden(DomainError):
    code = "forbidden"
    http_status = 403
    message = "This caller may not do that."


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    http_status = 401
    message = "Wrong email or password."


class InvalidStaffPin(DomainError):
    code = "invalid_staff_pin"
    http_status = 401
    message = "Wrong staff code or PIN."


class EmailTaken(DomainError):
    code = "email_taken"
    http_status = 409
    message = "An account with this email exists already."


class TooManyAttempts(DomainError):
    code = "too_many_attempts"
    http_status = 429
    message = "Too many failed attempts; wait a while and try again."


class WeakPassword(DomainError):
    code = "weak_password"
    http_status = 422
    message = "That password is too easy to guess: choose another."
