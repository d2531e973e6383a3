"""PII and secret detectors: formats, checksums, overlaps, and what must not match."""

from __future__ import annotations

import pytest

from aiapp.guardrails import find_pii, find_secrets, iban_valid, luhn_valid


def _types(text: str) -> list[tuple[str, str]]:
    return [(f.type, f.value) for f in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "write to ada.lovelace+work@example.co.uk today",
            [("EMAIL_ADDRESS", "ada.lovelace+work@example.co.uk")],
        ),
        ("card 4111 1111 1111 1111 exp 12/29", [("CREDIT_CARD", "4111 1111 1111 1111")]),
        ("amex 3782-822463-10005", [("CREDIT_CARD", "3782-822463-10005")]),
        ("iban DE89 3704 0044 0532 0130 00 please", [("IBAN_CODE", "DE89 3704 0044 0532 0130 00")]),
        ("pay GB82WEST12345698765432 now", [("IBAN_CODE", "GB82WEST12345698765432")]),
        ("ssn 123-45-6789", [("US_SSN", "123-45-6789")]),
        (
            "server 192.168.10.4 and 2001:db8::8a2e:370:7334",
            [("IP_ADDRESS", "192.168.10.4"), ("IP_ADDRESS", "2001:db8::8a2e:370:7334")],
        ),
        ("call +1 (415) 555-0133 ext 12", [("PHONE_NUMBER", "+1 (415) 555-0133 ext 12")]),
        ("my phone is 030 1234567", [("PHONE_NUMBER", "030 1234567")]),
    ],
)
def test_pii_formats(text: str, expected: list[tuple[str, str]]) -> None:
    assert _types(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn fails
        "iban GB00WEST12345698765432",  # mod-97 fails
        "ssn 000-12-3456 and 666-12-3456",  # never issued
        "version 1.2.3.4.5 and 999.1.1.1",
        "meet on 2024-05-17 at 10:30",
        "the house at 370 3911 Fourth Avenue",  # an address, not a phone
        "order 1234567890123456789012345",  # too long for anything
    ],
)
def test_pii_non_matches(text: str) -> None:
    assert find_pii(text) == []


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("gb82 west 1234 5698 7654 32") and not iban_valid("GB83WEST12345698765432")


def test_overlaps_prefer_checksummed_types() -> None:
    [finding] = find_pii("acct GB82WEST12345698765432")
    assert finding.type == "IBAN_CODE"


@pytest.mark.parametrize(
    "text",
    [
        "key sk-proj-AbCdEf1234567890XyZaBcDeF",
        "aws AKIAIOSFODNN7EXAMPLE",
        "gh token ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "password = S3cr3t!Passw0rd",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
        "postgres://admin:pa55w0rdX@db:5432/app",
        "token aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7",
    ],
)
def test_secrets_found(text: str) -> None:
    assert len(find_secrets(text)) == 1


@pytest.mark.parametrize(
    "text",
    [
        "Use the api key from your dashboard.",
        "the commit 3f2a9c1b8e7d6f5a4b3c2d1e0f9a8b7c6d5e4f3a",  # hex: too few character classes
        "password: please pick a long one",
        "Set OLLAMA_HOST=0.0.0.0 to listen on all interfaces",
    ],
)
def test_secrets_not_found(text: str) -> None:
    assert find_secrets(text) == []
