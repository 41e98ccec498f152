"""The production server as the README runs it: ``gunicorn -c gunicorn.conf.py wsgi:app``, a
gevent worker holding the streams. Every request below goes to it, so on SQLite too the
commits happen in the process that serves the streams."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from tests.events.conftest import Quiet, is_sale, open_stream, sale_body, sse_events

pytestmark = pytest.mark.concurrent


@pytest.fixture
def hub_here():
    return False  # the gunicorn worker's hub is the one that sequences and serves


@pytest.fixture
def gunicorn(processes):
    return processes(production=True)


@pytest.fixture
def shop(live, gunicorn):
    admin = live.admin_token()
    store, device, cashier = live.till(admin)
    live.product(admin, "LATTE", 450)
    token, me = live.shopper()
    card_id = me["cards"][0]["id"]
    status, _ = gunicorn.post(f"/v1/cards/{card_id}/top-ups", cashier, {
        "amount": {"amount": 2_000, "currency": "USD"}, "tender": "cash"})  # fmt: skip
    assert status == 201
    # A stream opened now might still get this top-up's events live (they are numbered after
    # the commit, by the hub): the tests' streams start after them, from where they end.
    set_up = live.stream(token, port=gunicorn.port, last_event_id=0)
    after = set_up.until(lambda e: e.type == "top_up.settled")[-1].id
    set_up.close()
    return {"cashier": cashier, "token": token, "card_id": card_id, "after": after,
            "number": live.card_number(card_id)}  # fmt: skip


def test_a_sale_at_the_till_reaches_the_shoppers_and_the_tills_streams(live, gunicorn, shop):
    phone = live.stream(shop["token"], port=gunicorn.port, last_event_id=shop["after"])
    till = live.stream(shop["cashier"], port=gunicorn.port, last_event_id=shop["after"])
    other_token, _ = live.shopper("Grace")
    other = live.stream(other_token, port=gunicorn.port)
    status, sale = gunicorn.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
    assert status == 201
    for stream in (phone, till):
        change = stream.until(lambda e: e.type == "card.balance_changed")[-1].data["data"]
        assert change == change | {"card_id": shop["card_id"], "reason": "sale",
                                   "balance": {"amount": 1_550, "currency": "USD"}}  # fmt: skip
        assert stream.until(is_sale(1_550))[-1].data["data"]["sale_id"] == sale["id"]
    with pytest.raises(Quiet):  # the other shopper gets heartbeats and nothing else
        other.next(quiet_after_heartbeats=2)


def test_reconnecting_to_gunicorn_with_last_event_id_yields_exactly_the_missed_events(
    live, gunicorn, shop
):
    stream = live.stream(shop["token"], port=gunicorn.port)
    gunicorn.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
    seen = stream.until(is_sale(1_550))
    stream.close()
    for _ in range(2):
        status, _ = gunicorn.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
        assert status == 201
    resumed = live.stream(shop["token"], port=gunicorn.port, last_event_id=seen[-1].id)
    missed = resumed.until(is_sale(650))
    assert [e.id for e in missed] == sorted({e.id for e in missed})
    assert missed[0].id > seen[-1].id
    assert [e.data["data"]["balance"]["amount"] for e in missed
            if e.type == "card.balance_changed"] == [1_100, 650]  # fmt: skip


def is_last_sale(e: dict) -> bool:
    return e["type"] == "sale.completed" and e["data"]["card_balance"]["amount"] == 1_100


def test_gunicorn_writes_http_1_1_streams_in_whole_chunks_and_http_1_0_ones_plain(
    live, gunicorn, shop
):
    """Under gunicorn the hub writes to an HTTP/1.1 stream's connection itself, in chunks
    that must stay well-formed; an HTTP/1.0 client gets the body unchunked, written by its
    stream's own greenlet. Both get the same events."""
    headers, chunked = open_stream(gunicorn.port, shop["token"], "HTTP/1.1", shop["after"])
    assert headers["transfer-encoding"] == "chunked"
    assert chunked.chunk() == b"retry: 1000\n\n"
    headers, plain = open_stream(gunicorn.port, shop["token"], "HTTP/1.0", shop["after"])
    assert "transfer-encoding" not in headers
    assert plain.fp.readline() == b"retry: 1000\n"

    for _ in range(2):
        status, _ = gunicorn.post("/v1/sales", shop["cashier"], sale_body(shop["number"]))
        assert status == 201
    in_chunks, unchunked = b"", b""
    while not any(is_last_sale(e) for e in sse_events(in_chunks)):
        in_chunks += chunked.chunk()
    while not any(is_last_sale(e) for e in sse_events(unchunked)):
        unchunked += plain.fp.readline()
    assert sse_events(in_chunks) == sse_events(unchunked)
    assert [e["data"]["balance"]["amount"] for e in sse_events(in_chunks)
            if e["type"] == "card.balance_changed"] == [1_550, 1_100]  # fmt: skip
    chunked.close()
    plain.close()


#: Requests gunicorn refuses before the app sees them, and the status it answers.
REFUSED_BY_THE_SERVER = {
    "control-byte-in-a-header": (b"POST /v1/sales HTTP/1.1\r\nHost: omnicard\r\n"
                                 b"Idempotency-Key: a\x01b\r\nContent-Length: 0\r\n\r\n", 400),
    "bad-header-name": (b"GET /v1/health HTTP/1.1\r\nHost: omnicard\r\nBad Name: 1\r\n\r\n", 400),
    "bad-request-line": (b"GET /v1/health\x00 HTTP/1.1\r\nHost: omnicard\r\n\r\n", 400),
    "request-line-too-long": (b"GET /v1/" + b"a" * 5_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "too-many-headers": (b"GET /v1/health HTTP/1.1\r\n"
                         + b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n", 431),
}  # fmt: skip


def test_every_request_gunicorn_refuses_is_answered_in_the_apis_error_shape(app, gunicorn):
    # One server for every case: starting gunicorn is most of the time this takes.
    for name, (raw, status) in REFUSED_BY_THE_SERVER.items():
        with socket.create_connection(("127.0.0.1", gunicorn.port), timeout=10) as sock:
            sock.sendall(raw)
            response = http.client.HTTPResponse(sock)
            response.begin()
            body = response.read()

        assert response.status == status, (name, body)
        assert response.getheader("Content-Type") == "application/json", (name, body)
        error = json.loads(body)["error"]
        assert set(error) == {"code", "message", "details"}, name
        assert error["code"] == {400: "bad_request", 414: "uri_too_long",
                                 431: "request_header_fields_too_large"}[status]  # fmt: skip
        assert error["message"], name
