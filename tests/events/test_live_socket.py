"""Under gunicorn the hub writes events to a live stream's connection itself, as far as the
connection takes them, and leaves the rest to the stream's own thread. On a real loopback
connection whose buffers hold little: what the hub writes, what it leaves, and that the
chunks on the wire stay whole and in order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from app.events.fanout import LiveSocket, Subscriber
from app.events.outbox import Delivered
from tests.events.conftest import ChunkedReader, connected_pair

LIMIT = 100


def event(position: int) -> Delivered:
    payload = f'{{"stars": {position}, "note": "{"x" * 300}"}}'
    return Delivered(position, "stars.changed", datetime(2026, 12, 3, tzinfo=UTC), 1, None, None,
                     None, payload)  # fmt: skip


@pytest.fixture
def live_stream():
    """A subscriber whose connection the hub may write to: (subscriber, the client's end)."""
    opened = []

    def open_one(buffer_bytes: int) -> tuple[Subscriber, ChunkedReader]:
        server_end, client_end = connected_pair(buffer_bytes)
        opened.extend([server_end, client_end])
        sub = Subscriber(customer_id=1)
        sub.out = LiveSocket(server_end)
        return sub, ChunkedReader(client_end)

    yield open_one
    for sock in opened:
        sock.close()


def filled(sub: Subscriber) -> int:
    """Offer events one at a time until the connection takes only part of one: its position."""
    position = 0
    while not sub.out.unsent:
        position += 1
        sub.offer([event(position)], LIMIT)
        assert not sub.queue  # until then, each went at once
        assert position < 1000, "the connection never filled"
    return position


def test_the_hub_writes_a_streams_share_of_a_round_as_one_chunk_at_once(live_stream):
    sub, reader = live_stream(1 << 16)
    sub.offer([event(1), event(2)], LIMIT)
    assert (list(sub.queue), sub.ready.is_set(), sub.last) == ([], False, 2)
    assert reader.chunk() == event(1).sse + event(2).sse
    sub.offer([event(2), event(3)], LIMIT)  # the stream's replay had written up to 2
    assert reader.chunk() == event(3).sse


def test_a_full_connection_leaves_the_rest_and_what_follows_to_the_streams_thread_in_order(
    live_stream,
):
    sub, reader = live_stream(1024)
    partial = filled(sub)
    assert sub.ready.is_set() and sub.last == partial  # woken, to send the end of the chunk
    sub.offer([event(partial + 1)], LIMIT)
    assert [e.position for e in sub.queue] == [partial + 1]  # not in the middle of a chunk
    with sub.out.lock:  # the stream's thread is at it: the hub leaves this one too
        sub.offer([event(partial + 2)], LIMIT)
    assert [e.position for e in sub.queue] == [partial + 1, partial + 2]

    read = ThreadPoolExecutor(1).submit(reader.events_until, partial + 2)
    with sub.out.lock:  # what the stream's thread does: the end of the chunk, then the queue
        waiting, behind = sub.take()
        sub.out.send(b"".join(e.sse for e in waiting))
    assert [e["id"] for e in read.result(timeout=10)] == list(range(1, partial + 3))

    assert not behind and not sub.out.unsent
    sub.offer([event(partial + 3)], LIMIT)  # all caught up: the hub writes at once again
    assert not sub.queue and reader.events_until(partial + 3)[-1]["id"] == partial + 3


def test_more_waiting_than_the_limit_sends_the_stream_to_the_database(live_stream):
    sub, _ = live_stream(1024)
    partial = filled(sub)
    sub.offer([event(partial + n) for n in range(1, LIMIT + 2)], LIMIT)
    assert sub.behind and not sub.queue


def test_a_send_to_a_client_that_has_gone_closes_the_stream(live_stream):
    sub, reader = live_stream(1 << 16)
    reader.close()
    for position in range(1, 4):  # the first send after the close may still succeed
        sub.offer([event(position)], LIMIT)
        if sub.closed:
            break
    assert sub.closed and sub.ready.is_set()
