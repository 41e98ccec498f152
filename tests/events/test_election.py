"""The asks' address, as the sequencer names it in its connection's ``application_name`` and
the other processes read it back: no database needed."""

from __future__ import annotations

import socket

import pytest

from app.events.election import ASKS_NAME, asks_address, family


def test_the_sequencers_name_reads_back_as_its_address_and_token():
    name = ASKS_NAME.format(host="10.0.0.5", port=4242, token="ab12cd34ef56")
    assert asks_address(name) == (("10.0.0.5", 4242), b"ab12cd34ef56")
    assert len(name) <= 63  # what PostgreSQL keeps of an application_name
    v6 = ASKS_NAME.format(host="fd00::1:2", port=65535, token="ab12cd34ef56")
    assert asks_address(v6) == (("fd00::1:2", 65535), b"ab12cd34ef56")
    assert len(v6) <= 63


@pytest.mark.parametrize(
    "name",
    [
        None,  # the holder's backend has gone, or no one holds the lock
        "",  # an older version: no name
        "gunicorn",
        "omnicard-asks 10.0.0.5 4242",  # cut short
        "omnicard-asks 10.0.0.5 port ab12",
        "omnicard-asks 10.0.0.5 4242 ab12 more",
        "omnicard-ask 10.0.0.5 4242 ab12",
    ],
)
def test_any_other_name_means_asking_by_notify(name):
    assert asks_address(name) is None


def test_an_ipv6_host_gets_an_ipv6_socket():
    assert [family(host) for host in ("::1", "2001:db8:0:0:0:0:0:1", "127.0.0.1")] == [
        socket.AF_INET6,
        socket.AF_INET6,
        socket.AF_INET,
    ]
