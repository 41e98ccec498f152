"""What runs after a request's commit can never turn the committed change into an error."""

from __future__ import annotations

import logging

import pytest
from flask.views import MethodView
from sqlalchemy import select

from app import create_app
from app.core.api import Blueprint
from app.core.db import after_commit, database, session
from app.ledger import services as ledger
from app.ledger.models import Account
from tests.conftest import TEST_CONFIG

blp = Blueprint("after_commit_probe", __name__, url_prefix="/v1/probe")
ran = []


@blp.route("/accounts")
class Accounts(MethodView):
    @blp.response(201)
    def post(self):
        """Open an account; after the commit, one callback fails and the next still runs."""
        ledger.open_account(session(), code="probe:after-commit", name="P", unit="USD",
                            type="equity")  # fmt: skip

        def fails():
            raise RuntimeError("the after-commit work failed")

        after_commit(fails)
        after_commit(lambda: ran.append("second"))


@pytest.fixture(scope="module")
def probe_app(database_url):
    probe = create_app(TEST_CONFIG | {"DATABASE_URL": database_url})
    probe.extensions["omnicard.api"].register_blueprint(blp)
    yield probe
    database(probe).engine.dispose()


def test_a_failing_after_commit_callback_is_logged_and_the_answer_stands(
    probe_app, committed, caplog
):
    with caplog.at_level(logging.ERROR, logger="app.core.db"):
        response = probe_app.test_client().post("/v1/probe/accounts")
    assert response.status_code == 201
    assert ran == ["second"]
    with database(probe_app).sessions() as s:
        assert s.scalar(select(Account.code).where(Account.code == "probe:after-commit"))
    assert "after-commit" in caplog.text and "the after-commit work failed" in caplog.text
