"""Shapes every domain's API shares: money, and cursor pages."""

from __future__ import annotations

import marshmallow as ma

#: No single amount in Omnicard comes near this (ten billion in major units).
MAX_AMOUNT_MINOR = 10**12
#: Ids are 64-bit: anything larger names nothing.
MAX_ID = 2**63 - 1


def Id(**kwargs) -> ma.fields.Integer:  # noqa: N802 - reads like the other field classes
    """A whole-number id in a request body."""
    return ma.fields.Integer(strict=True, validate=ma.validate.Range(1, MAX_ID), **kwargs)


class Schema(ma.Schema):
    """Unknown fields are an error, not silently dropped."""

    class Meta:
        unknown = ma.RAISE


class MoneySchema(Schema):
    amount = ma.fields.Integer(
        required=True,
        strict=True,
        validate=ma.validate.Range(min=1, max=MAX_AMOUNT_MINOR),
        metadata={"description": "Minor units (cents), a whole positive number."},
    )
    currency = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(r"^[A-Z]{3}$", error="An ISO 4217 code, e.g. USD."),
    )


class MoneyOutSchema(Schema):
    amount = ma.fields.Integer(required=True)
    currency = ma.fields.String(required=True)


def money(amount: int, currency: str) -> dict:
    return {"amount": amount, "currency": currency}


class PageArgsSchema(Schema):
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    cursor = ma.fields.String(load_default=None, metadata={"description": "From next_cursor."})


def decode_cursor(cursor: str | None) -> int | None:
    """Cursors are opaque to clients; here, the id to continue below."""
    if cursor is None:
        return None
    from app.core.errors import ValidationFailed

    if not (cursor.isascii() and cursor.isdigit() and 0 < len(cursor) <= 18):
        raise ValidationFailed("That cursor is not one we gave out.", fields={"cursor": cursor})
    return int(cursor)
