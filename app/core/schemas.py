"""Shapes every domain's API shares: money, cursor pages, and the fields a request's text and
lists come in.

Every string a request carries is a ``Text`` (or ``Email``, ``Url``) and every list a ``List``
with a most: PostgreSQL's text cannot hold the NUL character (nor can UTF-8 hold a lone
surrogate, which JSON's ``\\ud800`` can spell), and a list is refused by its length before a
single item of it is looked at.
"""

from __future__ import annotations

import re

import marshmallow as ma

#: No single amount in Omnicard comes near this (ten billion in major units).
MAX_AMOUNT_MINOR = 10**12
#: Ids are 64-bit: anything larger names nothing.
MAX_ID = 2**63 - 1


def Id(**kwargs) -> ma.fields.Integer:  # noqa: N802 - reads like the other field classes
    """A whole-number id in a request body."""
    return ma.fields.Integer(strict=True, validate=ma.validate.Range(1, MAX_ID), **kwargs)


#: What a database's text cannot hold: NUL, and UTF-16 surrogates on their own.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class _Storable:
    default_error_messages = {
        "unstorable": "Text may not contain the NUL character or an unpaired surrogate.",
    }

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        value = super()._deserialize(value, attr, data, **kwargs)
        if UNSTORABLE.search(value):
            raise self.make_error("unstorable")
        return value


class Text(_Storable, ma.fields.String):
    """A string in a request."""


class Email(_Storable, ma.fields.Email):
    """An email address in a request."""


class Url(_Storable, ma.fields.Url):
    """A URL in a request."""


class List(ma.fields.List):
    """A list in a request, with at most ``max_items`` items: a longer one is refused by its
    length alone (its items are not deserialized), and the OpenAPI document shows the bound."""

    def __init__(self, inner, *, max_items: int, min_items: int | None = None, **kwargs):
        self.max_items = max_items
        validate = kwargs.pop("validate", None)
        validators = [validate] if callable(validate) else list(validate or [])
        kwargs["validate"] = [ma.validate.Length(min=min_items, max=max_items), *validators]
        super().__init__(inner, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list) and len(value) > self.max_items:
            raise ma.ValidationError(f"At most {self.max_items} items.")
        return super()._deserialize(value, attr, data, **kwargs)


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
    currency = Text(
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
    cursor = Text(
        load_default=None,
        validate=ma.validate.Length(max=18),
        metadata={"description": "From next_cursor."},
    )


def decode_cursor(cursor: str | None) -> int | None:
    """Cursors are opaque to clients; here, the id to continue below."""
    if cursor is None:
        return None
    from app.core.errors import ValidationFailed

    if not (cursor.isascii() and cursor.isdigit() and 0 < len(cursor) <= 18):
        raise ValidationFailed("That cursor is not one we gave out.", fields={"cursor": cursor})
    return int(cursor)
