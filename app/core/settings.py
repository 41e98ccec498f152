"""The settings that services work by, as one typed, frozen value.

Services never read Flask's config: a view or CLI command takes ``settings()`` and hands it
(or the one value needed) to the service. Built from the app's config at the first use in each
request or command, so a change to ``app.config`` (a test's) counts from the next request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from flask import current_app, g


@dataclass(frozen=True, slots=True)
class Settings:
    #: The currency of the retailer's cards.
    currency: str
    card_max_balance_minor: int
    topup_min_minor: int
    topup_max_minor: int
    #: The most one sale may take from a card identified by an NFC UID alone.
    nfc_uid_limit_minor: int
    offline_allowance_max_minor: int
    offline_allowance_ttl_s: int
    stars_per_unit_card: int
    stars_per_unit_other: int
    gold_tier_stars: int
    customer_token_ttl_s: int
    staff_token_ttl_s: int
    cashier_session_ttl_s: int
    argon2_time_cost: int
    argon2_memory_kib: int
    register_max_failures_account: int
    register_max_failures_ip: int
    register_max_failures_card: int
    login_max_failures: int
    login_max_failures_account: int
    login_max_failures_address: int
    pin_max_failures_device: int
    card_code_key: str
    payment_gateway: str
    kiosk_session_idle_s: int
    kiosk_pairing_code_ttl_s: int
    kiosk_screen_token_ttl_s: int
    webhook_backoff_base_s: float
    webhook_backoff_cap_s: float
    webhook_max_attempts: int
    webhook_timeout_s: float
    demo_file: str

    @classmethod
    def of(cls, config: Mapping) -> Settings:
        return cls(**{name: config[name.upper()] for name in cls.__slots__})


def settings() -> Settings:
    """The current app's settings (for views and CLI commands to hand to services)."""
    found = g.get("omnicard_settings")
    if found is None:
        found = g.omnicard_settings = Settings.of(current_app.config)
    return found
