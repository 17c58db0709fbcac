"""Channel views: the file format, its errors, and network ATS worked by hand and as properties."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from availability.channels import (
    ALL_LOCATIONS,
    ChannelsError,
    ChannelView,
    ChannelViews,
    channel_ats,
    network_ats,
    parse_channels,
)

FILE = """{"channels": {
    "ecom":   {"locations": "all", "default_buffer": 1, "buffers": {"DC-1": 5}},
    "pickup": {"locations": ["S-1", "S-2"], "buffers": {"S-2": 2}},
    "plain":  {}
}}"""


def test_a_valid_file() -> None:
    views = parse_channels(FILE)
    assert views.names == ["ecom", "pickup", "plain"]
    ecom, pickup, plain = (views.get(name) for name in views.names)
    assert ecom is not None
    assert pickup is not None
    assert plain is not None
    assert ecom.eligible_locations is None
    assert (ecom.buffer("DC-1"), ecom.buffer("S-9")) == (5, 1)
    assert pickup.eligible_locations == frozenset({"S-1", "S-2"})
    assert (pickup.eligible("S-1"), pickup.eligible("S-3")) == (True, False)
    assert (pickup.buffer("S-1"), pickup.buffer("S-2")) == (0, 2)
    assert plain == ALL_LOCATIONS
    assert views.get(None) == ALL_LOCATIONS
    assert views.get("fax") is None


def test_network_ats_by_hand() -> None:
    views = parse_channels(FILE)
    ats = {"DC-1": 7, "S-1": 3, "S-2": 1, "S-3": 4}
    assert network_ats(ALL_LOCATIONS, ats) == 15
    ecom, pickup = views.get("ecom"), views.get("pickup")
    assert ecom is not None
    assert pickup is not None
    assert network_ats(ecom, ats) == (7 - 5) + (3 - 1) + (1 - 1) + (4 - 1)
    assert network_ats(pickup, ats) == 3 + 0  # S-2: max(0, 1 - 2); S-3 and DC-1 not eligible
    assert network_ats(pickup, list(ats.items())) == 3
    assert channel_ats(pickup, "DC-1", 100) == 0
    assert network_ats(ecom, {}) == 0


@pytest.mark.parametrize(("text", "names"), [
    ("{not json", "not valid JSON"),
    ("[1]", "must be a JSON object"),
    ('{"channel": {}}', "channel"),
    ('{"channels": {"bad name": {}}}', "channels.bad name"),
    ('{"channels": {"e": {"locations": []}}}', "channels.e.locations"),
    ('{"channels": {"e": {"locations": "some"}}}', "channels.e.locations"),
    ('{"channels": {"e": {"locations": ["S 1"]}}}', "channels.e.locations"),
    ('{"channels": {"e": {"locations": ["S-1", "S-1"]}}}', "listed twice"),
    ('{"channels": {"e": {"buffers": {"S-1": -1}}}}', "channels.e.buffers.S-1"),
    ('{"channels": {"e": {"buffers": {"S-1": 1.5}}}}', "channels.e.buffers.S-1"),
    ('{"channels": {"e": {"buffers": {"S-1": "2"}}}}', "channels.e.buffers.S-1"),
    ('{"channels": {"e": {"default_buffer": true}}}', "channels.e.default_buffer"),
    ('{"channels": {"e": {"locations": ["S-1"], "buffers": {"S-2": 1}}}}', "['S-2']"),
    ('{"channels": {"e": {"buffer": 1}}}', "channels.e.buffer"),
])
def test_invalid_files_say_where(text: str, names: str) -> None:
    with pytest.raises(ChannelsError) as caught:
        parse_channels(text)
    assert names in str(caught.value)


locations = st.text(alphabet="ABC123-", min_size=1, max_size=4)
ats_maps = st.dictionaries(locations, st.integers(0, 1_000), max_size=8)
views = st.builds(
    lambda listed, buffers, default, every: ChannelView.model_validate({
        "locations": "all" if every else sorted(listed | set(buffers)) or ["X"],
        "buffers": buffers, "default_buffer": default}),
    st.sets(locations, max_size=6), st.dictionaries(locations, st.integers(0, 50), max_size=4),
    st.integers(0, 50), st.booleans())


@given(views, ats_maps)
def test_network_ats_is_bounded_by_the_plain_sum(view: ChannelView, ats: dict[str, int]) -> None:
    total = network_ats(view, ats)
    assert 0 <= total <= network_ats(ALL_LOCATIONS, ats) == sum(ats.values())


@given(views, ats_maps, locations, st.integers(1, 100))
def test_more_stock_never_lowers_network_ats(view: ChannelView, ats: dict[str, int], where: str,
                                            more: int) -> None:
    richer = {**ats, where: ats.get(where, 0) + more}
    assert network_ats(view, richer) >= network_ats(view, ats)


@given(views, ats_maps)
def test_a_view_round_trips_through_the_file_format(view: ChannelView, ats: dict[str, int]) -> None:
    text = json.dumps({"channels": {"c": view.model_dump()}})
    again = parse_channels(text).get("c")
    assert again == view
    assert again is not None
    assert network_ats(again, ats) == network_ats(view, ats)


def test_no_file_means_no_channels() -> None:
    assert ChannelViews().names == []
