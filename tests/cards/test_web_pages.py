"""The card pages as the server answers them (no browser): who may see them, and that another
shopper's card id shows nothing of that card."""

from __future__ import annotations

import json
import re

import pytest

from app.auth.browser import SESSION_COOKIE
from app.cards.models import Card


@pytest.fixture
def ada(world, client):
    """Ada, signed in on the website (the session cookie): her card's id."""
    token, me = world.shopper("Ada")
    client.set_cookie(SESSION_COOKIE, token)
    return me["cards"][0]["id"]


@pytest.fixture
def bobs_card(world, db):
    """Another shopper's card, with money on it: the card row."""
    token, me = world.shopper("Bob")
    _store, _device, cashier = world.till()
    world.load(me["cards"][0]["id"], 4321, cashier)
    return db.get(Card, me["cards"][0]["id"])


def page_data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="card-page">(.*?)</script>', html, re.S)
    assert found, "the page carries no data for its script"
    return json.loads(found.group(1))


@pytest.mark.parametrize("path", ["/cards/1", "/cards/add"])
def test_the_card_pages_ask_for_a_login_first(client, db, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next={path}"


def test_a_shoppers_own_card_page_carries_its_id_for_its_script(client, ada):
    response = client.get(f"/cards/{ada}")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert page_data(html)["card_id"] == ada
    assert "/static/web/card.js" in html
    assert response.headers["Cache-Control"] == "no-store"


def test_another_shoppers_card_page_is_not_found_and_shows_nothing_of_it(client, ada, bobs_card):
    response = client.get(f"/cards/{bobs_card.id}")

    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "Card not found" in html
    assert 'id="card-page"' not in html
    assert "card.js" not in html
    for secret in (bobs_card.number, bobs_card.last4, "43.21", "4321", "Bob"):
        # As a word of its own: the page's random tokens (hex) may hold any four digits.
        assert not re.search(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", html)


def test_another_shoppers_card_and_no_card_at_all_look_the_same(client, db, ada, bobs_card):
    missing_id = bobs_card.id + 1000

    theirs = client.get(f"/cards/{bobs_card.id}").get_data(as_text=True)
    nobodys = client.get(f"/cards/{missing_id}")

    assert nobodys.status_code == 404
    same = nobodys.get_data(as_text=True).replace(str(missing_id), str(bobs_card.id))
    assert same == theirs


def test_the_add_card_page_has_its_form(client, ada):
    response = client.get("/cards/add")

    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="add-form"' in html
    assert 'name="number"' in html and 'name="security_code"' in html


def test_the_card_pages_speak_spanish_when_asked(client, ada):
    client.set_cookie("lang", "es")

    card = client.get(f"/cards/{ada}").get_data(as_text=True)
    add = client.get("/cards/add").get_data(as_text=True)

    assert '<html lang="es">' in card and "Movimientos" in card
    assert '<html lang="es">' in add and "Código de seguridad" in add
