"""Cache keys are built only from validated SKU, location and reservation strings.

The key builders of :mod:`availability.topics` refuse anything validation would have refused (a bug if
it ever happens), so no glob character, hash tag, space or control character can reach Redis whatever
path a string took. ``:`` is a legal SKU character (DESIGN.md), so the test shows why it cannot make
one key family reach into another.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from availability import topics

HOSTILE = ["*", "SKU-*", "SKU?", "[a-z]", "{tag}", "a}b", "a b", "line\nbreak", "cr\r", "nul\x00", "", "x" * 65,
           "ünïcode", "tab\t", "a/b", "a\\b", "\u2028"]
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"


@pytest.mark.parametrize("value", HOSTILE)
def test_a_position_key_refuses_what_validation_refuses(value: str) -> None:
    with pytest.raises(topics.UnsafeKeyPart):
        topics.position_key(value)


@pytest.mark.parametrize("value", ["line\nbreak", "cr\r", "nul\x00", "", "x" * 129, "del\x7f", "c1\x9b"])
@pytest.mark.parametrize("build", [topics.reservation_key, topics.reservation_claim_key])
def test_a_reservation_key_refuses_control_characters_and_bad_lengths(build: object, value: str) -> None:
    with pytest.raises(topics.UnsafeKeyPart):
        build(value)  # type: ignore[operator]


@settings(max_examples=300, deadline=None)
@given(sku=st.text(ID_ALPHABET, min_size=1, max_size=64))
def test_a_valid_sku_is_a_position_key_and_nothing_else(sku: str) -> None:
    key = topics.position_key(sku)
    assert key == "ats:v1:pos:" + sku
    for other in ("ats:v1:resv:", "ats:v1:resv-claim:", topics.HEARTBEAT_PREFIX, topics.ERP_BOOK_KEY,
                  topics.DECISIONS_CHANNEL):
        assert not key.startswith(other)
        assert key != other
