"""Who may come in, through real HTTP: shopper sign-up and login, staff login, token expiry and
logout, staff made on the command line, devices registered by an admin, and cashiers signing
in and out on a till."""

from __future__ import annotations

import hashlib

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from app import create_app
from app.auth.models import AuthToken, Staff
from app.auth.services import issue_token
from app.cards.models import Card
from app.core.db import database
from app.core.throttle import FailedAttempt
from app.customers.models import Customer
from app.sales.models import Sale
from app.stores.models import Device
from tests.conftest import TEST_CONFIG

PASSWORD = "a long password"
STAFF_PASSWORD = "correct horse battery"


def assert_error(response, status: int, code: str) -> None:
    """The one error shape of the API, with this status and code."""
    assert response.status_code == status, response.json
    assert set(response.json) == {"error"}
    assert set(response.json["error"]) == {"code", "message", "details"}
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]


def count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def sign_up(api, email="ada@example.test", password=PASSWORD, name="Ada"):
    return api.post(
        "/v1/auth/signup", json={"email": email, "password": password, "name": name}, key=None
    )


def log_in(api, email, password, account=None, ip="127.0.0.1"):
    body = {"email": email, "password": password}
    if account is not None:
        body["account"] = account
    return api.post("/v1/auth/login", json=body, key=None, environ_base={"REMOTE_ADDR": ip})


def ring_up(api, token, sku, price):
    return api.post(
        "/v1/sales",
        token=token,
        json={
            "lines": [{"sku": sku, "quantity": 1}],
            "tenders": [{"type": "cash", "amount": {"amount": price, "currency": "USD"}}],
        },
    )


def register_device(api, token, store_id, kind="pos", name="Till 1"):
    return api.post(
        "/v1/admin/devices",
        token=token,
        json={"store_id": store_id, "kind": kind, "name": name},
        key=None,
    )


def open_cashier_session(api, device_secret, staff_code, pin):
    return api.post(
        "/v1/pos/sessions",
        token=device_secret,
        json={"staff_code": staff_code, "pin": pin},
        key=None,
    )


# Sign-up


def test_signup_answers_201_with_a_token_that_opens_the_shoppers_own_profile(api):
    response = sign_up(api, email="ada@example.test", name="Ada Lovelace")

    assert response.status_code == 201, response.json
    me = api.get("/v1/me", token=response.json["token"])
    assert me.status_code == 200
    assert me.json["email"] == "ada@example.test"
    assert me.json["name"] == "Ada Lovelace"
    assert me.json == response.json["customer"]


def test_signup_gives_the_shopper_a_primary_digital_card_with_nothing_on_it_and_no_stars(api):
    token = sign_up(api).json["token"]

    me = api.get("/v1/me", token=token).json
    assert me["stars"] == 0
    assert me["tier"] == "green"
    assert len(me["cards"]) == 1
    card = me["cards"][0]
    assert card["kind"] == "digital"
    assert card["primary"] is True
    assert card["status"] == "active"
    assert card["balance"] == {"amount": 0, "currency": "USD"}


def test_signup_stores_the_email_lower_cased(api, db):
    response = sign_up(api, email="Grace.Hopper@Example.TEST")

    assert response.status_code == 201
    assert response.json["customer"]["email"] == "grace.hopper@example.test"
    assert db.scalar(select(Customer.email)) == "grace.hopper@example.test"


def test_signup_with_an_email_taken_in_any_case_answers_409_email_taken(api, db):
    assert sign_up(api, email="ada@example.test").status_code == 201

    response = sign_up(api, email="ADA@Example.Test", password="another long one")

    assert_error(response, 409, "email_taken")
    assert count(db, Customer) == 1
    assert count(db, Card) == 1


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("1111111111", "repetitive"),
        ("abababababab", "repetitive"),
        ("1234567890", "repetitive"),
        ("qwertyuiop", "repetitive"),
        ("password12", "common"),
        ("Password123!", "common"),
        ("iloveyou2024", "common"),
        ("basketball", "common"),
        ("ada.lovelace@example.test", "personal"),
        ("ada.lovelace1815", "personal"),
        ("Lovelace!!2024", "personal"),
        ("Omnicard2026!", "personal"),
    ],
)
def test_signup_refuses_a_guessable_password_and_creates_nothing(api, db, password, reason):
    response = sign_up(api, email="ada.lovelace@example.test", password=password,
                       name="Ada Lovelace")  # fmt: skip

    assert_error(response, 422, "weak_password")
    assert response.json["error"]["details"]["reason"] == reason
    assert response.json["error"]["details"]["fields"]["password"]
    assert count(db, Customer) == 0
    assert count(db, Card) == 0


def test_signup_takes_a_long_password_of_ordinary_words_without_composition_rules(api):
    response = sign_up(api, email="ada.lovelace@example.test", password="analytical engine notes",
                       name="Ada Lovelace")  # fmt: skip

    assert response.status_code == 201, response.json


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "name": "Ada"}, "email"),
        ({"email": "ada@example.test", "password": "short", "name": "Ada"}, "password"),
        ({"email": "ada@example.test", "password": PASSWORD, "name": ""}, "name"),
        ({"email": "ada@example.test", "password": PASSWORD}, "name"),
        (
            {"email": "ada@example.test", "password": PASSWORD, "name": "Ada", "tier": "gold"},
            "tier",
        ),
    ],
    ids=["bad-email", "short-password", "empty-name", "missing-name", "unknown-field"],
)
def test_signup_with_invalid_fields_answers_422_and_creates_nothing(api, db, body, field):
    response = api.post("/v1/auth/signup", json=body, key=None)

    assert_error(response, 422, "validation_error")
    assert field in response.json["error"]["details"]["fields"]["json"]
    assert count(db, Customer) == 0
    assert count(db, Card) == 0
    assert count(db, AuthToken) == 0


def test_signup_with_malformed_json_answers_400_malformed_json_and_creates_nothing(api, db):
    response = api.post(
        "/v1/auth/signup",
        data='{"email": "ada@example.test", "password": ',
        headers={"Content-Type": "application/json"},
        key=None,
    )

    assert_error(response, 400, "malformed_json")
    assert count(db, Customer) == 0
    assert count(db, AuthToken) == 0


# Login


def test_shopper_logs_in_with_email_in_any_case_and_gets_a_working_token(api):
    signed_up = sign_up(api, email="ada@example.test").json

    response = log_in(api, "  ADA@example.test ", PASSWORD)

    assert response.status_code == 200, response.json
    assert response.json["token"] != signed_up["token"]
    assert response.json["customer"]["id"] == signed_up["customer"]["id"]
    me = api.get("/v1/me", token=response.json["token"])
    assert me.status_code == 200
    assert me.json["id"] == signed_up["customer"]["id"]


def test_staff_log_in_with_account_staff_and_an_admin_token_opens_admin_endpoints(api, world):
    admin = world.staff("admin")
    store = world.store()

    response = log_in(api, admin.email, STAFF_PASSWORD, account="staff")

    assert response.status_code == 200, response.json
    assert response.json["staff"] == {
        "id": admin.id,
        "name": admin.name,
        "email": admin.email,
        "role": "admin",
        "store_id": None,
    }
    assert "customer" not in response.json
    registered = register_device(api, response.json["token"], store.id)
    assert registered.status_code == 201, registered.json


def test_a_staff_login_is_not_a_shopper_login(api, world):
    admin = world.staff("admin")

    as_shopper = log_in(api, admin.email, STAFF_PASSWORD)
    staff_token = log_in(api, admin.email, STAFF_PASSWORD, account="staff").json["token"]

    assert_error(as_shopper, 401, "invalid_credentials")
    assert_error(api.get("/v1/me", token=staff_token), 403, "forbidden")


def test_a_shopper_cannot_log_in_as_staff(api):
    sign_up(api, email="ada@example.test")

    response = log_in(api, "ada@example.test", PASSWORD, account="staff")

    assert_error(response, 401, "invalid_credentials")


def test_wrong_password_and_unknown_email_answer_the_same_401_invalid_credentials(api):
    sign_up(api, email="ada@example.test")

    wrong_password = log_in(api, "ada@example.test", "not the password")
    unknown_email = log_in(api, "nobody@example.test", "not the password")

    assert_error(wrong_password, 401, "invalid_credentials")
    assert wrong_password.json == unknown_email.json
    assert unknown_email.status_code == 401
    assert "token" not in wrong_password.json


def test_staff_wrong_password_and_unknown_email_answer_the_same_401(api, world):
    admin = world.staff("admin")

    wrong_password = log_in(api, admin.email, "not the password", account="staff")
    unknown_email = log_in(api, "nobody@example.test", "not the password", account="staff")

    assert_error(wrong_password, 401, "invalid_credentials")
    assert wrong_password.json == unknown_email.json


@pytest.fixture
def argon2_work(monkeypatch):
    """Counts the argon2id hashes and verifications done, each still done for real."""
    work = []
    for name in ("hash", "verify"):
        real = getattr(PasswordHasher, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            work.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(PasswordHasher, name, counted)
    return work


def test_an_unknown_email_costs_the_same_argon2_work_as_a_wrong_password(api, argon2_work):
    sign_up(api, email="ada@example.test")
    log_in(api, "someone@example.test", "a wrong guess")  # the first may prepare its decoy
    argon2_work.clear()

    log_in(api, "ada@example.test", "a wrong guess")
    wrong_password = list(argon2_work)
    argon2_work.clear()
    log_in(api, "nobody@example.test", "a wrong guess")
    unknown_email = list(argon2_work)

    assert wrong_password == ["verify"]
    assert unknown_email == wrong_password


def test_login_with_an_unknown_account_kind_answers_422(api):
    sign_up(api, email="ada@example.test")

    response = log_in(api, "ada@example.test", PASSWORD, account="cashier")

    assert_error(response, 422, "validation_error")


def test_repeated_wrong_passwords_lock_the_account_with_429_too_many_attempts(app, api):
    sign_up(api, email="ada@example.test")
    limit = app.config["LOGIN_MAX_FAILURES"]
    for _ in range(limit):
        assert_error(log_in(api, "ada@example.test", "a wrong guess"), 401, "invalid_credentials")

    response = log_in(api, "ada@example.test", "a wrong guess")

    assert_error(response, 429, "too_many_attempts")


def test_a_locked_account_refuses_even_the_right_password(app, api, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    sign_up(api, email="ada@example.test")
    for _ in range(3):
        log_in(api, "ada@example.test", "a wrong guess")

    response = log_in(api, "ada@example.test", PASSWORD)

    assert_error(response, 429, "too_many_attempts")
    assert "token" not in response.json


def test_guessing_at_one_account_does_not_lock_out_another(app, api, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    sign_up(api, email="ada@example.test")
    sign_up(api, email="grace@example.test")
    for _ in range(3):
        log_in(api, "ada@example.test", "a wrong guess")

    response = log_in(api, "grace@example.test", PASSWORD)

    assert response.status_code == 200, response.json


def test_guessing_unknown_emails_counts_towards_a_lock_too(app, api, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    for _ in range(3):
        assert log_in(api, "nobody@example.test", "a wrong guess").status_code == 401

    response = log_in(api, "NOBODY@example.test", "a wrong guess")

    assert_error(response, 429, "too_many_attempts")


def test_repeated_wrong_staff_passwords_answer_429_too_many_attempts(app, api, world, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    admin = world.staff("admin")
    for _ in range(3):
        log_in(api, admin.email, "a wrong guess", account="staff")

    response = log_in(api, admin.email, STAFF_PASSWORD, account="staff")

    assert_error(response, 429, "too_many_attempts")


def test_a_strangers_wrong_passwords_do_not_lock_the_owner_out(app, api, db):
    sign_up(api, email="ada@example.test")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        log_in(api, "ada@example.test", "a wrong guess", ip="203.0.113.66")
    assert_error(log_in(api, "ada@example.test", PASSWORD, ip="203.0.113.66"), 429,
                 "too_many_attempts")  # fmt: skip
    tokens = count(db, AuthToken)

    response = log_in(api, "ada@example.test", PASSWORD, ip="198.51.100.5")

    assert response.status_code == 200, response.json
    assert count(db, AuthToken) == tokens + 1


def test_a_strangers_wrong_passwords_do_not_lock_a_staff_member_out(app, api, world):
    admin = world.staff("admin")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        log_in(api, admin.email, "a wrong guess", account="staff", ip="203.0.113.66")

    response = log_in(api, admin.email, STAFF_PASSWORD, account="staff", ip="198.51.100.5")

    assert response.status_code == 200, response.json


def spray(api, ip, n):
    """``n`` wrong guesses from ``ip``, each at a different unknown account."""
    for i in range(n):
        assert log_in(api, f"nobody{i}@example.test", "a wrong guess", ip=ip).status_code == 401


def test_guessing_from_a_shared_address_does_not_refuse_its_other_users_right_passwords(
    app, api, monkeypatch
):
    """One store's network, one address: everyone else there still logs in."""
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_ADDRESS", 15)
    sign_up(api, email="grace@example.test")
    spray(api, "198.51.100.20", 16)

    response = log_in(api, "grace@example.test", PASSWORD, ip="198.51.100.20")

    assert response.status_code == 200, response.json


def test_while_an_address_sprays_guesses_its_guessers_wait_sooner(app, api, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_ADDRESS", 15)
    sign_up(api, email="grace@example.test")
    spray(api, "198.51.100.20", 15)
    for _ in range(3):  # fewer than LOGIN_MAX_FAILURES
        log_in(api, "grace@example.test", "a wrong guess", ip="198.51.100.20")

    response = log_in(api, "grace@example.test", PASSWORD, ip="198.51.100.20")

    assert_error(response, 429, "too_many_attempts")
    assert log_in(api, "grace@example.test", PASSWORD, ip="198.51.100.21").status_code == 200


def test_an_account_under_attack_from_many_addresses_still_lets_its_owner_in(app, api, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES_ACCOUNT", 12)
    sign_up(api, email="ada@example.test")
    for n in range(4):
        for _ in range(3):
            log_in(api, "ada@example.test", "a wrong guess", ip=f"203.0.113.{n}")

    # Each attacking address has failed three times: while the account is under attack, no more.
    refused = log_in(api, "ada@example.test", PASSWORD, ip="203.0.113.0")
    owner = log_in(api, "ada@example.test", PASSWORD, ip="198.51.100.5")

    assert_error(refused, 429, "too_many_attempts")
    assert owner.status_code == 200, owner.json


def test_a_very_long_email_is_counted_without_overflowing_the_record(api, db):
    email = "x" * 240 + "@example.test"

    response = log_in(api, email, "a wrong guess")

    assert_error(response, 401, "invalid_credentials")
    assert all(len(subject) <= 120 for (subject,) in db.execute(select(FailedAttempt.subject)))


def test_without_trusted_proxies_a_client_cannot_choose_its_address(app, api, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    sign_up(api, email="ada@example.test")
    for n in range(3):
        api.post(
            "/v1/auth/login",
            json={"email": "ada@example.test", "password": "a wrong guess"},
            key=None,
            headers={"X-Forwarded-For": f"192.0.2.{n}"},
        )

    response = log_in(api, "ada@example.test", PASSWORD)

    assert_error(response, 429, "too_many_attempts")


def test_behind_a_trusted_proxy_logins_are_throttled_by_the_forwarded_address(
    database_url, committed
):
    """OMNICARD_TRUSTED_PROXIES=1: every request comes from the proxy's address, and the
    client's is the last one in X-Forwarded-For."""
    app = create_app(TEST_CONFIG | {"DATABASE_URL": database_url, "TRUSTED_PROXIES": 1,
                                    "LOGIN_MAX_FAILURES": 3})  # fmt: skip
    try:
        client = app.test_client()

        def log_in_via_proxy(password, client_address):
            return client.post(
                "/v1/auth/login",
                json={"email": "proxied@example.test", "password": password},
                headers={"X-Forwarded-For": f"198.51.100.250, {client_address}"},
                environ_base={"REMOTE_ADDR": "10.0.0.2"},
            )

        signed_up = client.post(
            "/v1/auth/signup",
            json={"email": "proxied@example.test", "password": PASSWORD, "name": "Pat"},
        )
        assert signed_up.status_code == 201, signed_up.json
        for _ in range(3):
            assert log_in_via_proxy("a wrong guess", "203.0.113.66").status_code == 401

        assert_error(log_in_via_proxy(PASSWORD, "203.0.113.66"), 429, "too_many_attempts")
        assert log_in_via_proxy(PASSWORD, "198.51.100.5").status_code == 200
    finally:
        database(app).engine.dispose()


# Token lifetime


def test_a_request_without_a_token_answers_401_unauthenticated(api):
    assert_error(api.get("/v1/me"), 401, "unauthenticated")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer oct_not-a-token", "Bearer ocd_not-a-device", "Basic YWRhOnBhc3N3b3Jk", "Bearer "],
)
def test_an_unknown_or_malformed_token_answers_401_unauthenticated(api, authorization):
    response = api.get("/v1/me", headers={"Authorization": authorization})

    assert_error(response, 401, "unauthenticated")


def test_an_expired_shopper_token_answers_401_unauthenticated(api, db):
    customer_id = sign_up(api).json["customer"]["id"]
    expired, _ = issue_token(db, "customer", -60, customer_id=customer_id)
    current, _ = issue_token(db, "customer", 60, customer_id=customer_id)

    assert_error(api.get("/v1/me", token=expired), 401, "unauthenticated")
    assert api.get("/v1/me", token=current).status_code == 200


def test_a_login_outlives_its_configured_lifetime_no_longer(app, api, monkeypatch):
    sign_up(api, email="ada@example.test")
    monkeypatch.setitem(app.config, "CUSTOMER_TOKEN_TTL_S", -1)

    token = log_in(api, "ada@example.test", PASSWORD).json["token"]

    assert_error(api.get("/v1/me", token=token), 401, "unauthenticated")


def test_a_staff_login_outlives_its_configured_lifetime_no_longer(app, api, world, monkeypatch):
    admin = world.staff("admin")
    store = world.store()
    monkeypatch.setitem(app.config, "STAFF_TOKEN_TTL_S", -1)

    token = log_in(api, admin.email, STAFF_PASSWORD, account="staff").json["token"]

    assert_error(register_device(api, token, store.id), 401, "unauthenticated")


def test_logout_answers_204_and_the_token_stops_working(api):
    token = sign_up(api).json["token"]

    response = api.post("/v1/auth/logout", token=token, key=None)

    assert response.status_code == 204
    assert response.data == b""
    assert_error(api.get("/v1/me", token=token), 401, "unauthenticated")
    assert_error(api.post("/v1/auth/logout", token=token, key=None), 401, "unauthenticated")


def test_logout_ends_only_the_login_it_was_sent_with(api):
    phone = sign_up(api, email="ada@example.test").json["token"]
    laptop = log_in(api, "ada@example.test", PASSWORD).json["token"]

    assert api.post("/v1/auth/logout", token=phone, key=None).status_code == 204

    assert api.get("/v1/me", token=laptop).status_code == 200


def test_staff_logout_revokes_the_staff_token(api, world):
    admin = world.staff("admin")
    store = world.store()
    token = log_in(api, admin.email, STAFF_PASSWORD, account="staff").json["token"]

    assert api.post("/v1/auth/logout", token=token, key=None).status_code == 204

    assert_error(register_device(api, token, store.id), 401, "unauthenticated")


def test_logout_without_a_token_answers_401(api):
    assert_error(api.post("/v1/auth/logout", key=None), 401, "unauthenticated")


def test_only_a_hash_of_a_token_is_stored(api, db):
    token = sign_up(api).json["token"]

    row = db.scalar(select(AuthToken))
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (row.token_hash, row.hint)


# Staff accounts from the command line


def create_staff(app, *args):
    return app.test_cli_runner().invoke(args=["staff", "create", *args])


def test_cli_creates_an_admin_who_can_log_in(app, api, db):
    result = create_staff(
        app, "--email", "Boss@Example.test", "--name", "Boss", "--role", "admin",
        "--password", "a staff password",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "created admin boss@example.test" in result.output
    response = log_in(api, "boss@example.test", "a staff password", account="staff")
    assert response.status_code == 200, response.json
    assert response.json["staff"]["role"] == "admin"


def test_cli_creates_a_cashier_who_can_sign_in_on_a_till_of_their_store(app, api, world):
    store = world.store()
    _, secret = world.device(store, "pos")

    result = create_staff(
        app, "--email", "cash@example.test", "--name", "Cass", "--role", "cashier",
        "--password", "a staff password", "--staff-code", "C42", "--pin", "4321",
        "--store-id", str(store.id),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    response = open_cashier_session(api, secret, "C42", "4321")
    assert response.status_code == 201, response.json
    assert response.json["cashier"]["email"] == "cash@example.test"
    assert response.json["cashier"]["store_id"] == store.id


def test_cli_staff_password_is_hashed_not_stored(app, db):
    create_staff(
        app, "--email", "boss@example.test", "--name", "Boss", "--role", "admin",
        "--password", "a staff password",
    )  # fmt: skip

    staff = db.scalar(select(Staff))
    assert "a staff password" not in staff.password_hash
    assert staff.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--role", "admin", "--password", "too short"], "at least 10 characters"),
        (["--role", "admin", "--password", "password12"], "most common or breached"),
        (["--role", "admin", "--password", "1111111111"], "repetitive or sequential"),
        (["--role", "admin", "--password", "x@example.test!"], "close to your email"),
        (["--role", "owner", "--password", "a staff password"], "'owner' is not one of"),
        (["--role", "admin", "--password", "a staff password", "--pin", "12ab"], "4 to 8 digits"),
        (["--role", "admin", "--password", "a staff password", "--pin", "123"], "4 to 8 digits"),
        (
            [
                "--role",
                "cashier",
                "--password",
                "a staff password",
                "--staff-code",
                "C1",
                "--pin",
                "1234",
            ],
            "a cashier needs --staff-code, --pin and --store-id",
        ),
        (
            [
                "--role",
                "cashier",
                "--password",
                "a staff password",
                "--pin",
                "1234",
                "--store-id",
                "1",
            ],
            "a cashier needs --staff-code, --pin and --store-id",
        ),
    ],  # fmt: skip
    ids=[
        "short-password",
        "common-password",
        "repetitive-password",
        "email-as-password",
        "unknown-role",
        "pin-not-digits",
        "pin-too-short",
        "cashier-without-store",
        "cashier-without-code",
    ],
)
def test_cli_refuses_bad_input_and_creates_no_one(app, db, extra, complaint):
    result = create_staff(app, "--email", "x@example.test", "--name", "X", *extra)

    assert result.exit_code != 0
    assert complaint in result.output
    assert count(db, Staff) == 0


def test_cli_refuses_an_email_taken_in_any_case(app, db, world):
    world.staff("admin")
    taken = db.scalar(select(Staff.email))

    result = create_staff(
        app, "--email", taken.upper(), "--name", "Twin", "--role", "admin",
        "--password", "a staff password",
    )  # fmt: skip

    assert result.exit_code == 1
    assert "that email or staff code is taken" in result.output
    assert count(db, Staff) == 1


def test_cli_refuses_a_staff_code_taken(app, db, world):
    store = world.store()
    existing = world.staff("cashier", store=store)

    result = create_staff(
        app, "--email", "new@example.test", "--name", "New", "--role", "cashier",
        "--password", "a staff password", "--staff-code", existing.staff_code, "--pin", "1234",
        "--store-id", str(store.id),
    )  # fmt: skip

    assert result.exit_code == 1
    assert "that email or staff code is taken" in result.output
    assert count(db, Staff) == 1


def test_cli_refuses_a_cashier_of_a_store_that_does_not_exist(app, db):
    result = create_staff(
        app, "--email", "cash@example.test", "--name", "Cass", "--role", "cashier",
        "--password", "a staff password", "--staff-code", "C42", "--pin", "4321",
        "--store-id", "999999",
    )  # fmt: skip

    assert result.exit_code != 0
    assert "no store with id 999999" in result.output
    assert count(db, Staff) == 0


# Devices


def test_admin_registers_a_device_to_a_store_and_is_shown_its_secret(api, db, world):
    store = world.store()

    response = register_device(api, world.admin_token(), store.id, kind="pos", name="Till 1")

    assert response.status_code == 201, response.json
    body = response.json
    assert body["store_id"] == store.id
    assert body["kind"] == "pos"
    assert body["name"] == "Till 1"
    assert body["secret"].startswith("ocd_")
    device = db.get(Device, body["id"])
    assert device.store_id == store.id
    assert device.secret_hash == hashlib.sha256(body["secret"].encode()).hexdigest()


def test_two_devices_get_different_secrets(api, world):
    store = world.store()
    admin = world.admin_token()

    first = register_device(api, admin, store.id, name="Till 1").json["secret"]
    second = register_device(api, admin, store.id, name="Till 2").json["secret"]

    assert first != second


def test_a_registered_pos_secret_authenticates_as_that_device_of_that_store(api, world):
    store = world.store()
    cashier = world.staff("cashier", store=store, pin="1357")
    registered = register_device(api, world.admin_token(), store.id, kind="pos").json

    response = open_cashier_session(api, registered["secret"], cashier.staff_code, "1357")

    assert response.status_code == 201, response.json
    assert response.json["device_id"] == registered["id"]
    assert response.json["store_id"] == store.id


def test_a_registered_kiosk_secret_authenticates_as_a_kiosk(api, world):
    store = world.store()
    cashier = world.staff("cashier", store=store, pin="1357")
    kiosk = register_device(api, world.admin_token(), store.id, kind="kiosk").json

    response = open_cashier_session(api, kiosk["secret"], cashier.staff_code, "1357")

    assert_error(response, 403, "forbidden")  # known, but not a till: not 401


@pytest.mark.parametrize("caller", ["shopper", "cashier", "device", "staff-cashier"])
def test_only_an_admin_may_register_a_device(api, db, world, caller):
    store, device, till_token = world.till()
    _, secret = world.device(store, "kiosk")
    cashier = world.staff("cashier", store=store)
    tokens = {
        "shopper": lambda: world.shopper()[0],
        "cashier": lambda: till_token,
        "device": lambda: secret,
        "staff-cashier": lambda: log_in(api, cashier.email, STAFF_PASSWORD, account="staff").json[
            "token"
        ],
    }
    token = tokens[caller]()
    devices_before = count(db, Device)

    response = register_device(api, token, store.id)

    assert_error(response, 403, "forbidden")
    assert count(db, Device) == devices_before


def test_registering_a_device_without_a_token_answers_401(api, db, world):
    store = world.store()

    response = register_device(api, None, store.id)

    assert_error(response, 401, "unauthenticated")
    assert count(db, Device) == 0


def test_registering_a_device_to_an_unknown_store_answers_404_store_not_found(api, db, world):
    admin = world.admin_token()

    response = register_device(api, admin, 999_999)

    assert_error(response, 404, "store_not_found")
    assert count(db, Device) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"store_id": "1", "kind": "pos", "name": "Till"},
        {"kind": "pos", "name": "Till"},
        {"store_id": 1, "kind": "printer", "name": "Till"},
        {"store_id": 1, "kind": "pos", "name": ""},
    ],
    ids=["store-id-as-string", "no-store", "unknown-kind", "empty-name"],
)
def test_registering_a_device_with_invalid_fields_answers_422(api, db, world, body):
    world.store()

    response = api.post("/v1/admin/devices", token=world.admin_token(), json=body, key=None)

    assert_error(response, 422, "validation_error")
    assert count(db, Device) == 0


# Cashier sessions on a till


def test_cashier_signs_in_on_a_till_and_the_session_is_bound_to_device_store_and_cashier(
    api, world
):
    store = world.store()
    device, secret = world.device(store, "pos")
    cashier = world.staff("cashier", store=store, pin="1357")
    product = world.product(price=450)

    response = open_cashier_session(api, secret, cashier.staff_code, "1357")

    assert response.status_code == 201, response.json
    body = response.json
    assert body["token"].startswith("oct_")
    assert body["store_id"] == store.id
    assert body["device_id"] == device.id
    assert body["cashier"]["id"] == cashier.id
    sale = ring_up(api, body["token"], product.sku, 450)
    assert sale.status_code == 201, sale.json
    assert sale.json["store_id"] == store.id
    assert sale.json["device_id"] == device.id


def test_a_cashier_session_is_not_a_shopper_or_admin_login(api, world):
    store, _, till_token = world.till()

    assert_error(api.get("/v1/me", token=till_token), 403, "forbidden")
    assert_error(register_device(api, till_token, store.id), 403, "forbidden")


def test_cashier_sign_in_with_a_wrong_pin_answers_401_invalid_staff_pin(api, db, world):
    store = world.store()
    _, secret = world.device(store, "pos")
    cashier = world.staff("cashier", store=store, pin="1357")

    response = open_cashier_session(api, secret, cashier.staff_code, "7531")

    assert_error(response, 401, "invalid_staff_pin")
    assert count(db, AuthToken) == 0


def test_cashier_sign_in_with_an_unknown_staff_code_answers_the_same_as_a_wrong_pin(api, world):
    store = world.store()
    _, secret = world.device(store, "pos")
    cashier = world.staff("cashier", store=store, pin="1357")

    wrong_pin = open_cashier_session(api, secret, cashier.staff_code, "7531")
    unknown_code = open_cashier_session(api, secret, "NOBODY", "1357")

    assert_error(unknown_code, 401, "invalid_staff_pin")
    assert unknown_code.json == wrong_pin.json


def test_a_cashier_cannot_sign_in_on_a_till_of_another_store(api, db, world):
    home = world.store()
    elsewhere = world.store()
    _, secret_elsewhere = world.device(elsewhere, "pos")
    cashier = world.staff("cashier", store=home, pin="1357")

    response = open_cashier_session(api, secret_elsewhere, cashier.staff_code, "1357")

    assert_error(response, 401, "invalid_staff_pin")
    assert count(db, AuthToken) == 0


def test_an_admin_may_sign_in_on_a_till_of_any_store(api, world):
    store = world.store()
    device, secret = world.device(store, "pos")
    admin = world.staff("admin", pin="9753")

    response = open_cashier_session(api, secret, admin.staff_code, "9753")

    assert response.status_code == 201, response.json
    assert response.json["store_id"] == store.id
    assert response.json["device_id"] == device.id


def test_a_kiosk_cannot_open_a_cashier_session(api, db, world):
    store = world.store()
    _, kiosk_secret = world.device(store, "kiosk")
    cashier = world.staff("cashier", store=store, pin="1357")

    response = open_cashier_session(api, kiosk_secret, cashier.staff_code, "1357")

    assert_error(response, 403, "forbidden")
    assert count(db, AuthToken) == 0


@pytest.mark.parametrize("caller", ["shopper", "admin", "cashier", "nobody"])
def test_only_a_pos_device_may_open_a_cashier_session(api, world, caller):
    store, _, till_token = world.till()
    cashier = world.staff("cashier", store=store, pin="1357")
    tokens = {
        "shopper": lambda: world.shopper()[0],
        "admin": world.admin_token,
        "cashier": lambda: till_token,
        "nobody": lambda: None,
    }

    response = open_cashier_session(api, tokens[caller](), cashier.staff_code, "1357")

    if caller == "nobody":
        assert_error(response, 401, "unauthenticated")
    else:
        assert_error(response, 403, "forbidden")


def test_repeated_wrong_pins_on_a_till_answer_429_too_many_attempts(app, api, world, monkeypatch):
    monkeypatch.setitem(app.config, "LOGIN_MAX_FAILURES", 3)
    store = world.store()
    _, secret = world.device(store, "pos")
    cashier = world.staff("cashier", store=store, pin="1357")
    for _ in range(3):
        assert_error(open_cashier_session(api, secret, cashier.staff_code, "0000"), 401,
                     "invalid_staff_pin")  # fmt: skip

    response = open_cashier_session(api, secret, cashier.staff_code, "1357")

    assert_error(response, 429, "too_many_attempts")


def test_wrong_pins_for_a_staff_code_lock_it_out_of_that_till_only(app, api, db, world):
    """Anyone who knows a staff code could otherwise keep that cashier off every till, and
    a till's failures would keep every other cashier off it."""
    store = world.store()
    _, till = world.device(store, "pos")
    _, other_till = world.device(store, "pos")
    cashier = world.staff("cashier", store=store, pin="1357")
    colleague = world.staff("cashier", store=store, pin="1357")
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        open_cashier_session(api, till, cashier.staff_code, "0000")
    sessions = count(db, AuthToken)

    assert_error(open_cashier_session(api, till, cashier.staff_code, "1357"), 429,
                 "too_many_attempts")  # fmt: skip
    assert count(db, AuthToken) == sessions
    elsewhere = open_cashier_session(api, other_till, cashier.staff_code, "1357")
    assert elsewhere.status_code == 201, elsewhere.json
    same_till = open_cashier_session(api, till, colleague.staff_code, "1357")
    assert same_till.status_code == 201, same_till.json


@pytest.mark.parametrize(
    "body",
    [{"staff_code": "C1", "pin": "12"}, {"staff_code": "C1", "pin": "abcd"}, {"pin": "1234"}],
    ids=["pin-too-short", "pin-not-digits", "no-staff-code"],
)
def test_cashier_sign_in_with_invalid_fields_answers_422(api, world, body):
    store = world.store()
    _, secret = world.device(store, "pos")

    response = api.post("/v1/pos/sessions", token=secret, json=body, key=None)

    assert_error(response, 422, "validation_error")


def test_cashier_sign_out_ends_the_session_and_its_next_sale_answers_401(api, db, world):
    store, _, till_token = world.till()
    product = world.product(price=450)
    assert ring_up(api, till_token, product.sku, 450).status_code == 201

    response = api.post("/v1/auth/logout", token=till_token, key=None)

    assert response.status_code == 204
    assert_error(ring_up(api, till_token, product.sku, 450), 401, "unauthenticated")
    assert count(db, Sale) == 1


def test_after_sign_out_the_till_can_sign_a_cashier_in_again(api, world):
    store = world.store()
    _, secret = world.device(store, "pos")
    cashier = world.staff("cashier", store=store, pin="1357")
    product = world.product(price=450)
    first = open_cashier_session(api, secret, cashier.staff_code, "1357").json["token"]
    api.post("/v1/auth/logout", token=first, key=None)

    second = open_cashier_session(api, secret, cashier.staff_code, "1357")

    assert second.status_code == 201, second.json
    assert ring_up(api, second.json["token"], product.sku, 450).status_code == 201
