"""Shifts under concurrency, on PostgreSQL with real commits: two cashiers opening the same
till's shift at once get one shift, and a sale still being written when the shift closes is
in its report (the close waits for it), never left out of a closed shift."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from app.auth.models import AuthToken
from app.auth.principal import Principal
from app.core.db import database
from app.core.settings import settings
from app.sales import services as sales
from app.shifts.models import Shift
from app.shifts.services import open_shift_id
from tests.api import test_sales
from tests.api.test_sales import usd, wait_until_it_waits_on_a_lock

live = test_sales.live

pytestmark = pytest.mark.concurrent


@pytest.fixture(autouse=True)
def postgresql_only(db_kind):
    if db_kind != "postgresql":
        pytest.skip("SQLite runs one writer at a time from BEGIN: nothing can interleave")


def cashier_of(live, till) -> Principal:
    """The till's cashier session as the services see it."""
    with live.session() as s:
        token = s.scalar(select(AuthToken).where(AuthToken.device_id == till.device.id))
        return Principal(
            "cashier", staff_id=token.staff_id, role="cashier", device_id=till.device.id,
            device_kind="pos", store_id=till.store.id, token_id=token.id,
        )  # fmt: skip


def test_two_cashiers_opening_one_till_at_once_get_one_shift(live):
    till = live.tills[0]
    engine = database(live.app).engine
    with live.session() as first, ThreadPoolExecutor(1) as pool:
        # One open is written and not committed yet: the other does not see it, and inserts.
        with live.app.app_context():
            from app.core.settings import settings
            from app.shifts.services import open_shift

            held = open_shift(first, cashier_of(live, till), 10_000, currency=settings().currency)
        opening = pool.submit(
            live.client().post, "/v1/pos/shifts", token=till.token, json={"float": usd(5_000)}
        )
        wait_until_it_waits_on_a_lock(engine, opening)
        first.commit()
        answer = opening.result()

    assert answer.status_code == 409, answer.json
    assert answer.json["error"]["code"] == "shift_open"
    assert answer.json["error"]["details"]["shift_id"] == held.id
    with live.session() as s:
        assert s.scalars(select(Shift.id).where(Shift.device_id == till.device.id)).all() == [
            held.id
        ]


def test_a_sale_being_written_when_the_shift_closes_is_in_the_report(live):
    till = live.tills[0]
    opened = live.api.post("/v1/pos/shifts", token=till.token, json={"float": usd(10_000)})
    assert opened.status_code == 201, opened.json
    engine = database(live.app).engine
    with live.session() as selling, ThreadPoolExecutor(1) as pool:
        with live.app.app_context():
            sale = sales.make_sale(
                selling, settings(), cashier_of(live, till), presented=None, lines=[("LATTE", 1)],
                tenders=[("cash", 450)],
            ).sale  # fmt: skip
        assert sale.shift_id == opened.json["id"]
        closing = pool.submit(
            live.client().post, f"/v1/pos/shifts/{opened.json['id']}/close",
            token=till.token, json={"counted": usd(10_450)},
        )  # fmt: skip
        wait_until_it_waits_on_a_lock(engine, closing)
        selling.commit()
        answer = closing.result()

    assert answer.status_code == 200, answer.json
    report = answer.json["report"]
    assert report["sales"]["count"] == 1
    assert report["expected_cash"] == usd(10_450)
    assert report["difference"] == usd(0)


def test_a_sale_after_the_close_finds_the_shift_closed(live):
    till = live.tills[0]
    opened = live.api.post("/v1/pos/shifts", token=till.token, json={"float": usd(10_000)})
    shift_id = opened.json["id"]
    engine = database(live.app).engine
    with live.session() as closing_first, ThreadPoolExecutor(1) as pool:
        # The close holds the shift's row: a sale that looks for the open shift waits for it.
        closing_first.execute(select(Shift).where(Shift.id == shift_id).with_for_update())
        closing_first.get(Shift, shift_id).status = "closed"
        row = closing_first.get(Shift, shift_id)
        row.closed_at = row.opened_at
        row.counted_minor = 10_000
        row.report = {}
        closing_first.flush()

        def look():
            with live.session() as s, live.app.app_context():
                return open_shift_id(s, till.device.id, joining=True)

        looking = pool.submit(look)
        wait_until_it_waits_on_a_lock(engine, looking)
        closing_first.commit()

        assert looking.result() is None
