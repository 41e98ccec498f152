"""The fan-out, alone and in memory (no database, no hub): which open stream is offered which
event, in one share per round, and what a till presented with a card watches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.core.types import utcnow
from app.events.fanout import PRESENTED_FOR, Fanout, Subscriber
from app.events.outbox import Delivered

T = datetime(2026, 12, 4, 12, tzinfo=UTC)


def event(position, type="stars.changed", *, customer=None, store=None, device=None, card=None,
          at=None) -> Delivered:  # fmt: skip
    return Delivered(position, type, at or utcnow(), customer, store, device, card, "{}")


def positions(sub: Subscriber) -> list[int]:
    return [e.position for e in sub.queue]


def opened(fanout: Fanout, *subs: Subscriber) -> list[Subscriber]:
    for sub in subs:
        fanout.add(sub, first=lambda: None)
    return list(subs)


def test_each_stream_is_offered_only_what_it_may_see_in_one_share_and_in_order():
    fanout = Fanout(queue_limit=100)
    ada, bob, till, other_till, kiosk, admin = opened(
        fanout, Subscriber(customer_id=1), Subscriber(customer_id=2),
        Subscriber(store_id=5, device_id=9), Subscriber(store_id=5, device_id=10),
        Subscriber(device_id=11), Subscriber(everything=True),
    )  # fmt: skip
    fanout.hand_out([
        event(1, customer=1, store=5),  # Ada's sale in store 5
        event(2, customer=2),  # Bob's top-up online
        event(3, "card.presented", store=5, device=9, card=42),  # at the first till only
        event(4, customer=3, card=42),  # the presented card's, while it is watched
        event(5, customer=3, card=43),  # another card's
        event(6, "product.updated", device=11),  # the kiosk's own
        event(7, customer=1, store=6),
    ])  # fmt: skip
    assert positions(ada) == [1, 7]
    assert positions(bob) == [2]
    assert positions(till) == [1, 3, 4]
    assert positions(other_till) == [1]
    assert positions(kiosk) == [6]
    assert positions(admin) == [1, 2, 3, 4, 5, 6, 7]
    assert fanout.last_position == 7
    # The last word is the stream's own: another till of the store never sees a card
    # presented elsewhere, whatever the indexes offer it.
    assert not other_till.may_see(event(3, "card.presented", store=5, device=9, card=42))
    assert all(sub.ready.is_set() for sub in (ada, bob, till, other_till, kiosk, admin))


def test_a_closed_stream_is_offered_nothing_more():
    fanout = Fanout(queue_limit=100)
    (ada,) = opened(fanout, Subscriber(customer_id=1))
    fanout.remove(ada)
    fanout.hand_out([event(1, customer=1)])
    assert ada.closed and positions(ada) == [] and not fanout.audience.all


def test_the_first_stream_to_open_runs_first_and_the_second_does_not():
    fanout, firsts = Fanout(queue_limit=100), []
    fanout.add(Subscriber(customer_id=1), first=lambda: firsts.append(1))
    fanout.add(Subscriber(customer_id=2), first=lambda: firsts.append(2))
    assert firsts == [1]


def test_a_card_presented_longer_ago_than_the_watch_lasts_is_not_watched():
    fanout = Fanout(queue_limit=100)
    (till,) = opened(fanout, Subscriber(store_id=5, device_id=9))
    fanout.watch(till, {42: utcnow() - PRESENTED_FOR - timedelta(seconds=1), 43: utcnow()})
    fanout.hand_out([event(1, customer=3, card=42), event(2, customer=3, card=43)])
    assert positions(till) == [2]
    assert list(till.watched) == [43] and 42 not in fanout.audience.by_card


def test_a_stream_with_more_waiting_than_the_limit_is_sent_to_the_database():
    fanout = Fanout(queue_limit=3)
    slow, steady = opened(fanout, Subscriber(customer_id=1), Subscriber(customer_id=1))
    fanout.hand_out([event(1, customer=1), event(2, customer=1)])
    steady.take()
    fanout.hand_out([event(3, customer=1), event(4, customer=1)])
    assert (slow.behind, positions(slow)) == (True, [])  # it catches up from the database
    assert (steady.behind, positions(steady)) == (False, [3, 4])


def test_only_streams_idle_for_a_heartbeat_are_due_one():
    fanout = Fanout(queue_limit=100)
    quiet, busy = opened(fanout, Subscriber(customer_id=1), Subscriber(customer_id=2))
    quiet.sent_at, busy.sent_at = 100.0, 110.0
    assert fanout.idle(115.0, heartbeat_s=15) == [quiet]
