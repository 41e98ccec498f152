"""Webhooks against a real HTTP receiver on 127.0.0.1: signed, retried with backoff, ordered
per account, visible with their attempts, and replayable."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.core.db import session
from app.core.types import utcnow
from app.webhooks.models import Webhook, WebhookDelivery
from app.webhooks.services import backoff, seconds_until_next_due, sign, verify_signature
from tests.snapshot import snapshot

pytestmark = pytest.mark.concurrent


class Receiver:
    """An outside system: records each request; answers from a script, then 200."""

    def __init__(self):
        self.requests: list[dict] = []
        self.script: list[int] = []
        self.fail_card: tuple[int, int] | None = None  # (card id, failures left)
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with receiver.changed:
                    status = receiver.script.pop(0) if receiver.script else 200
                    card_id = json.loads(body)["data"].get("card_id")
                    fail = receiver.fail_card
                    if fail and fail[0] == card_id and fail[1] > 0:
                        status = 500
                        receiver.fail_card = (card_id, fail[1] - 1)
                    receiver.requests.append({
                        "headers": dict(self.headers), "body": body, "status": status})  # fmt: skip
                    receiver.changed.notify_all()
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/omnicard"

    def wait_for(self, predicate, timeout=15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver saw: {[r['body'][:80] for r in self.requests]}")
                self.changed.wait(left)
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def live_config():
    return {"WEBHOOK_BACKOFF_BASE_S": 0.05, "WEBHOOK_BACKOFF_CAP_S": 0.2,
            "WEBHOOK_MAX_ATTEMPTS": 4, "WEBHOOK_TIMEOUT_S": 2}  # fmt: skip


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def shop(live, receiver):
    admin = live.admin_token()
    _, _, cashier = live.till(admin)
    hook = live.call("POST", "/v1/admin/webhooks", admin, {
        "url": receiver.url, "event_types": ["card.balance_changed"]}, key=False)  # fmt: skip
    assert hook.status_code == 201, hook.json
    return {"admin": admin, "cashier": cashier, "hook": hook.json}


def deliveries_when(live, shop, done, timeout=10.0) -> list[dict]:
    """The webhook's deliveries, once ``done(items)`` holds: the worker records an attempt
    just after the receiver answers, so the test looks until it has."""
    path = f"/v1/admin/webhooks/{shop['hook']['id']}/deliveries"
    deadline = time.monotonic() + timeout
    while not done(items := live.call("GET", path, shop["admin"]).json["items"]):
        assert time.monotonic() < deadline, items
        time.sleep(0.02)
    return items


def balances(requests, card_id=None):
    out = []
    for r in requests:
        event = json.loads(r["body"])
        if card_id is None or event["data"]["card_id"] == card_id:
            out.append((event["data"]["card_id"], event["data"]["balance"]["amount"], r["status"]))
    return out


def test_deliveries_are_signed_with_a_timestamp_and_the_secret(live, shop, receiver):
    _, me = live.shopper()
    card_id = me["cards"][0]["id"]
    live.load(card_id, 1_500, shop["cashier"])
    request = receiver.wait_for(lambda rs: len(rs) >= 1)[0]
    headers = request["headers"]
    assert headers["Omnicard-Event"] == "card.balance_changed"
    assert verify_signature(shop["hook"]["secret"], headers["Omnicard-Signature"], request["body"])
    assert not verify_signature("whsec_wrong", headers["Omnicard-Signature"], request["body"])
    assert not verify_signature(
        shop["hook"]["secret"], headers["Omnicard-Signature"], request["body"] + " "
    )
    event = json.loads(request["body"])
    assert event["type"] == "card.balance_changed"
    assert event["data"]["balance"] == {"amount": 1_500, "currency": "USD"}


def test_an_old_signature_is_refused_by_the_check():
    old = int(time.time()) - 3600
    assert not verify_signature("s", sign("s", old, "{}"), "{}")
    assert verify_signature("s", sign("s", int(time.time()), "{}"), "{}")


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(n, 5, 60).total_seconds() for n in range(1, 6)] == [5, 10, 20, 40, 60]


def test_failed_deliveries_are_retried_and_every_attempt_is_visible(live, shop, receiver):
    receiver.script = [500, 503]
    _, me = live.shopper()
    live.load(me["cards"][0]["id"], 1_500, shop["cashier"])
    requests = receiver.wait_for(lambda rs: any(r["status"] == 200 for r in rs))
    assert [r["status"] for r in requests] == [500, 503, 200]
    assert len({r["headers"]["Omnicard-Delivery"] for r in requests}) == 1
    (delivery,) = deliveries_when(live, shop, lambda ds: ds[0]["status"] != "pending")
    assert delivery["status"] == "delivered"
    assert delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 503, 200]


def test_one_accounts_deliveries_wait_for_its_earlier_one_while_others_go_ahead(
    live, shop, receiver
):
    _, ada = live.shopper("Ada")
    _, grace = live.shopper("Grace")
    ada_card, grace_card = ada["cards"][0]["id"], grace["cards"][0]["id"]
    receiver.fail_card = (ada_card, 2)  # Ada's first delivery fails twice
    live.load(ada_card, 1_000, shop["cashier"])
    receiver.wait_for(lambda rs: len(rs) >= 1)
    live.load(ada_card, 700, shop["cashier"])
    live.load(grace_card, 900, shop["cashier"])
    requests = receiver.wait_for(lambda rs: len([b for b in balances(rs) if b[2] == 200]) >= 3)
    ada_seen = balances(requests, ada_card)
    assert ada_seen == [(ada_card, 1_000, 500), (ada_card, 1_000, 500),
                        (ada_card, 1_000, 200), (ada_card, 1_700, 200)]  # fmt: skip
    assert (grace_card, 900, 200) in balances(requests, grace_card)


def test_a_delivery_waiting_for_its_accounts_earlier_one_is_not_counted_as_due(committed, engine):
    """Else every serving process's webhook worker would look again at once, in a loop,
    for as long as the earlier delivery backs off."""
    hook = Webhook(url="http://127.0.0.1:9/", event_types=["stars.changed"], secret="s")
    committed.add(hook)
    committed.flush()
    now = utcnow()

    def delivery(account: str, due_in_s: float) -> WebhookDelivery:
        return WebhookDelivery(
            webhook_id=hook.id, event_id=1, event_type="stars.changed", account_key=account,
            body="{}", next_attempt_at=now + timedelta(seconds=due_in_s),
        )  # fmt: skip

    committed.add_all([delivery("customer:1", 10), delivery("customer:1", -1)])
    committed.commit()
    assert 9 < seconds_until_next_due(engine) <= 10  # the later one waits for the first
    committed.add(delivery("customer:2", -1))
    committed.commit()
    assert seconds_until_next_due(engine) == 0  # another account's is due now


def test_a_delivery_that_keeps_failing_is_given_up_and_can_be_replayed(live, shop, receiver):
    receiver.script = [500, 500, 500, 500]  # WEBHOOK_MAX_ATTEMPTS = 4
    _, me = live.shopper()
    live.load(me["cards"][0]["id"], 1_200, shop["cashier"])
    receiver.wait_for(lambda rs: len(rs) >= 4)
    path = f"/v1/admin/webhooks/{shop['hook']['id']}/deliveries"
    failed = deliveries_when(live, shop, lambda ds: ds[0]["status"] == "failed")[0]
    assert failed["attempts"] == 4
    replayed = live.call("POST", f"{path}/{failed['id']}/replay", shop["admin"], key=False)
    assert replayed.status_code == 201
    assert replayed.json["replay_of_id"] == failed["id"]
    requests = receiver.wait_for(lambda rs: any(r["status"] == 200 for r in rs))
    assert requests[-1]["body"] == requests[0]["body"]
    items = live.call("GET", path, shop["admin"]).json["items"]
    assert [(d["id"], d["status"]) for d in items][1] == (failed["id"], "failed")


def test_only_admins_manage_webhooks_and_bad_ones_are_refused(live, shop):
    token, _ = live.shopper()
    hook = f"/v1/admin/webhooks/{shop['hook']['id']}"
    before = rows(live)
    refused = live.call(
        "POST",
        "/v1/admin/webhooks",
        token,
        {"url": "http://127.0.0.1/x", "event_types": ["card.balance_changed"]},
        key=False,
    )
    assert refused.status_code == 403
    for method, path in (("DELETE", hook), ("POST", f"{hook}/deliveries/1/replay")):
        assert live.call(method, path, token, key=False).status_code == 403, path
    for body in ({"url": "ftp://x", "event_types": ["card.balance_changed"]},
                 {"url": "http://127.0.0.1/x", "event_types": ["no.such.event"]},
                 {"url": "http://127.0.0.1/x", "event_types": []}):  # fmt: skip
        response = live.call("POST", "/v1/admin/webhooks", shop["admin"], body, key=False)
        assert response.status_code == 422, body
        assert response.json["error"]["code"] == "validation_error"
    missing = live.call("GET", "/v1/admin/webhooks/987654/deliveries", shop["admin"])
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "webhook_not_found"
    gone = live.call("POST", "/v1/admin/webhooks/987654/deliveries/1/replay", shop["admin"])
    assert gone.status_code == 404
    assert rows(live) == before  # no webhook added or switched off, no delivery queued


def rows(live) -> dict:
    with live.app.app_context():
        return snapshot(session())
