"""The till while its server is away: it keeps selling (cash, bank card, and card balance
within an offline allowance the server reserved beforehand), then replays each sale once."""

from __future__ import annotations

import pytest

from pos_client import config as till_config
from pos_client.till import Tender, Till, TillError
from tests.pos_client.live import Changes, ServerProcess


@pytest.fixture
def own_server(database_url, server):
    """A server process of the till's own, to stop and start again on the same port."""
    process = ServerProcess(database_url)
    process.start()
    yield process
    process.stop()


def test_the_server_stops_mid_shift_and_the_till_sells_on_then_replays_each_sale_once(
    world, own_server, tmp_path
):
    ada = world.shopper(load_minor=5000)
    path = tmp_path / "pos.toml"
    path.write_text(world.config_text(tmp_path / "state", api_url=own_server.url))
    changes = Changes()
    till = Till(till_config.load(path), on_change=changes, hardware=False)
    till.start()
    try:
        till.sign_in(world.staff_code, world.pin)
        till.open_shift(5000)
        shopper = till.identify(card_number=ada.number)
        assert shopper.allowance_left_minor == 2500  # set aside for this till
        till.add(world.skus["bagel"])
        assert not till.pay([Tender("cash", None, 500)]).offline

        own_server.stop()
        # Cash: queued, and the shopper leaves with a receipt (no link yet).
        till.add(world.skus["latte"])
        cash = till.pay([Tender("cash", None, 1000)])
        assert cash.offline and cash.sale is None and cash.change_minor == 555
        assert cash.receipt["offline"] and cash.receipt["url"] is None and cash.printed
        assert not till.online and till.queue_length == 1
        # Ada's card, recognised offline by its allowance's fingerprint.
        shopper = till.identify(card_number=ada.number)
        assert shopper.offline and shopper.card_id == ada.card_id
        till.add(world.skus["latte"])
        card = till.pay([Tender("card_balance", None)])
        assert card.offline and till.shopper.allowance_left_minor == 2500 - 445
        # More than is left of the allowance: refused, nothing queued.
        till.add(world.skus["mug"], 2)
        with pytest.raises(TillError) as refused:
            till.pay([Tender("card_balance", None)])
        assert refused.value.code == "offline_card_refused"
        assert refused.value.details["allowance_left"]["amount"] == 2055
        assert till.queue_length == 2
        bank = till.pay([Tender("bank_card", None)])  # the same two mugs, by bank card
        assert bank.offline and till.queue_length == 3
        # What needs the server is refused plainly while it is away.
        with pytest.raises(TillError) as refused:
            till.top_up(2000, "cash")
        assert refused.value.code == "unreachable"
        assert world.sale_count() == 1

        own_server.start()
        changes.wait_for(lambda: till.queue_length == 0 and till.online, timeout_s=20)
        assert till.queue(("refused",)) == []
        totals = sorted(total for _, total, _ in world.sales())
        assert totals == sorted([300, 445, 445, 2500])  # each sale exactly once
        assert world.balance(ada.card_id) == 5000 - 2500  # the rest of the allowance is held
        world.verify_ledger()

        # The reserved money cannot be spent online elsewhere: 25.00 is available, not 45.55.
        other_till = world.other_till()
        r = world.call("POST", "/v1/sales", other_till, {
            "customer": {"card_number": ada.number},
            "lines": [{"sku": world.skus["mug"], "quantity": 3}],
            "tenders": [{"type": "card_balance", "amount": {"amount": 3750, "currency": "USD"}}],
        })  # fmt: skip
        assert r.status_code == 409 and r.json["error"]["code"] == "insufficient_funds"

        # Closing the shift gives back what the allowance did not use.
        report = till.close_shift(5000 + 300 + 445)
        assert report["report"]["difference"]["amount"] == 0
        assert world.balance(ada.card_id) == 5000 - 445
        world.verify_ledger()
    finally:
        till.stop()
