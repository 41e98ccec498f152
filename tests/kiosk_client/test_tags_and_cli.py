"""Writing and checking tags through nfcpy (a writable simulated Type 2 tag on the udp
frontend), and the kiosk command's JSON and exit codes: 0 done, 1 refused, 2 bad input,
3 unreachable."""

from __future__ import annotations

import ndef
import pytest

from kiosk.tags import blank_tag, check_tag, product_uri, sim_tag, write_tag
from store_devices.type2_tag import ndef_tlv
from tests.kiosk_client.helpers import (
    SHOP,
    WAIT_S,
    closed_port_url,
    free_udp_path,
    run_kiosk,
)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "kiosk.toml"
    path.write_text(f"""
api_url = "{closed_port_url()}"
device_secret = "s"
state_dir = "state"
shop_url = "{SHOP}"
[nfc]
reader = "{free_udp_path()}"
[timeouts]
connect_s = 1.0
""")
    return path


def test_a_product_link_written_to_a_blank_tag_is_on_the_tag_and_reads_back():
    reader = free_udp_path()
    tag = blank_tag("test")
    uri = product_uri(SHOP, "DW-MUG")

    written = write_tag(reader, uri, timeout_s=WAIT_S, simulated=tag)

    assert written["kind"] == "product" and written["sku"] == "DW-MUG"
    assert written["uris"] == [uri] and written["uid"] == tag.uid.hex().upper()
    message = b"".join(ndef.message_encoder([ndef.UriRecord(uri)]))
    assert tag.memory[16:].startswith(ndef_tlv(message))  # in the tag's memory
    checked = check_tag(reader, timeout_s=WAIT_S, simulated=tag)  # a new read of that tag
    assert checked == written


def test_tags_write_prints_what_was_written_and_read_back(config):
    code, body, _ = run_kiosk("tags", "write", "--sign", "drink ware", config=config)

    assert code == 0, body
    assert body["written"] == {"uri": f"{SHOP}/c/drink%20ware"} and body["simulated"]
    assert body["read_back"]["kind"] == "sign"
    assert body["read_back"]["category"] == "drink ware"


@pytest.mark.parametrize(
    ("value", "kind", "field", "expected"),
    [
        ("BN-PIKE", "product", "sku", "BN-PIKE"),
        ("sign:beans", "sign", "category", "beans"),
        ("4000 0012 3456 7899", "card", "card_number", "4000001234567899"),
        ("https://elsewhere.example/p/AP-CAP", "product", "sku", "AP-CAP"),
        ("uid:04A1B2C3D4E5F6", "uid", "uid", "04A1B2C3D4E5F6"),
        ("garbled", "unreadable", "unreadable", True),
    ],
)
def test_tags_check_says_what_a_tag_is(config, value, kind, field, expected):
    code, body, _ = run_kiosk("tags", "check", "--sim", value, config=config)

    assert code == 0, body
    assert body["kind"] == kind and body[field] == expected
    assert sim_tag(value, SHOP)[1].uid == body["uid"]


def test_tags_check_with_no_tag_on_the_reader_is_refused(config):
    code, body, _ = run_kiosk("tags", "check", "--timeout", "0.5", config=config)

    assert code == 1 and body["error"]["code"] == "no_tag"


@pytest.mark.parametrize(
    "args",
    [
        ("sim", "tap", "not a sku!"),
        ("sim", "tap", "4000001234567890"),  # wrong check digit
        ("sim", "tap", "uid:0102"),
        ("tags", "write", "--product", "A/B"),
        ("tags", "check", "--reader", "usb", "--sim", "DW-MUG"),
    ],
)
def test_bad_input_exits_2_with_a_clear_error(config, args):
    code, body, _ = run_kiosk(*args, config=config)

    assert code == 2 and body["error"]["code"] == "usage" and body["error"]["message"]


def test_a_missing_config_exits_2(tmp_path):
    code, body, _ = run_kiosk("pair", config=tmp_path / "nowhere.toml")

    assert code == 2 and body["error"]["code"] == "config"


def test_pair_while_the_api_is_down_exits_3(config):
    code, body, _ = run_kiosk("pair", config=config)

    assert code == 3 and body["error"]["code"] == "unreachable"


def test_sim_tap_with_no_reader_listening_is_refused(config):
    code, body, _ = run_kiosk("sim", "tap", "DW-MUG", "--timeout", "0.5", config=config)

    assert code == 1 and body["error"]["code"] == "no_tag"
