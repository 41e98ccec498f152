"""A realistic receipt for demos and docs: ``python -m pos_client.hardware.sample_receipt
docs/receipt.png`` draws it as the till's printer prints it."""

from __future__ import annotations

import sys


def _usd(amount_minor: int) -> dict:
    return {"amount": amount_minor, "currency": "USD"}


#: Two lattes and a muffin at Pike Place, paid part from the card's balance and part in cash.
SAMPLE_RECEIPT = {
    "id": "q7Jm2xv0cVb3PzR9tLw8kA",
    "kind": "sale",
    "url": "https://omnicard.example/r/q7Jm2xv0cVb3PzR9tLw8kA",
    "number": "S-000123",
    "sale_id": 123,
    "refund_id": None,
    "sale_number": None,
    "store": {"name": "Pike Place", "address": "1912 Pike Pl, Seattle, WA 98101"},
    "till": "Front till 1",
    "cashier": "Ana",
    "created_at": "2026-12-04T18:20:31.512000+00:00",
    "currency": "USD",
    "lines": [
        {
            "sku": "CF-LATTE-G",
            "name": "Caffe Latte Grande",
            "quantity": 2,
            "unit_price": _usd(495),
            "line_total": _usd(990),
        },
        {
            "sku": "BK-MUFFIN-BB",
            "name": "Blueberry Muffin",
            "quantity": 1,
            "unit_price": _usd(325),
            "line_total": _usd(325),
        },
    ],
    "total": _usd(1315),
    "tenders": [
        {"type": "card_balance", "amount": _usd(800)},
        {"type": "cash", "amount": _usd(515)},
    ],
    "cash_given": _usd(1000),
    "change": _usd(485),
    "card": {"last4": "4821", "balance_after": _usd(1760)},
    "stars": {"earned": 21, "balance": 142},
    "offline": False,
}


if __name__ == "__main__":
    from pos_client.hardware.printer import render_receipt_png

    render_receipt_png(SAMPLE_RECEIPT, sys.argv[1] if len(sys.argv) > 1 else "receipt.png")
