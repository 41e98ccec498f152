"""Card numbers, security codes, pay codes and NFC UIDs: pure functions, no database."""

from __future__ import annotations

import pytest

from app.cards import numbers


def luhn_sum_ok(number: str) -> bool:
    """The Luhn check written out independently: from the right, double every second digit
    (subtracting 9 when that passes 9); the total is a multiple of ten."""
    total = 0
    for position, ch in enumerate(reversed(number)):
        digit = int(ch)
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


@pytest.mark.parametrize(
    ("partial", "check_digit"),
    [
        ("7992739871", "3"),  # the textbook example: 79927398713
        ("411111111111111", "1"),  # 4111 1111 1111 1111, a well-known test card
        ("555555555555444", "4"),  # 5555 5555 5555 4444
        ("601100000000000", "4"),  # 6011 0000 0000 0004
        ("000000000000000", "0"),
    ],
)
def test_luhn_check_digit_matches_known_numbers(partial, check_digit):
    assert numbers.luhn_check_digit(partial) == check_digit


@pytest.mark.parametrize("number", ["4111111111111111", "5555555555554444", "6011000000000004"])
def test_luhn_valid_accepts_known_good_sixteen_digit_numbers(number):
    assert numbers.luhn_valid(number)


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111112",  # last digit wrong
        "4111111111111121",  # two neighbours swapped
        "411111111111111",  # 15 digits
        "41111111111111110",  # 17 digits
        "411111111111111a",
        "",
    ],
)
def test_luhn_valid_rejects_wrong_digits_lengths_and_characters(number):
    assert not numbers.luhn_valid(number)


def test_every_single_digit_change_breaks_the_check():
    number = "6011000000000004"
    for i in range(16):
        for replacement in "0123456789":
            if replacement == number[i]:
                continue
            changed = number[:i] + replacement + number[i + 1 :]
            assert not numbers.luhn_valid(changed), changed


def test_new_card_numbers_are_sixteen_digits_starting_with_6_and_pass_luhn():
    generated = [numbers.new_card_number() for _ in range(200)]
    for number in generated:
        assert len(number) == 16
        assert number.isdigit()
        assert number.startswith("6")
        assert luhn_sum_ok(number), number
        assert numbers.luhn_valid(number)
    assert len(set(generated)) == len(generated)


def test_new_security_codes_are_eight_digits_with_leading_zeros_kept():
    codes = [numbers.new_security_code() for _ in range(500)]
    for code in codes:
        assert len(code) == 8
        assert code.isdigit()
    assert len(set(codes)) > 490


def test_new_pay_codes_are_twelve_digits():
    codes = [numbers.new_pay_code() for _ in range(200)]
    for code in codes:
        assert len(code) == 12
        assert code.isdigit()
    assert len(set(codes)) == len(codes)


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("04:a2:3b:4c:5d:6e:80", "04A23B4C5D6E80"),
        ("04-A2-3B-4C-5D-6E-80", "04A23B4C5D6E80"),
        ("04 a2 3b 4c 5d 6e 80", "04A23B4C5D6E80"),
        ("04a23b4c5d6e80", "04A23B4C5D6E80"),
        ("04a23b4c\r\n", "04A23B4C"),  # a reader's line ending is not part of the UID
        ("\t04\ta2\t3b\t4c\t\t", "04A23B4C"),
        ("deadbeef", "DEADBEEF"),  # 4 bytes, the shortest UID
        ("00112233445566778899", "00112233445566778899"),  # 10 bytes, the longest
    ],
)
def test_nfc_uids_are_normalised_to_upper_case_hex_without_separators(given, normalised):
    assert numbers.normalise_nfc_uid(given) == normalised


@pytest.mark.parametrize(
    "given",
    [
        "",
        "04a23b",  # 3 bytes
        "0011223344556677889900",  # 11 bytes
        "04a23b4c5",  # odd number of hex digits
        "04:a2:3b:zz",  # not hex
        "04a2.3b4c.5d",  # a separator we do not accept
        "\u0660\u0664a23b4c",  # Arabic-Indic digits are digits, but not hex
    ],
)
def test_things_that_are_not_nfc_uids_normalise_to_none(given):
    assert numbers.normalise_nfc_uid(given) is None
