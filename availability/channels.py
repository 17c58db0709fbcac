"""Channel views: which locations a sales channel may sell from, and what each holds back from it.

The file (``ATS_CHANNELS_FILE``) is JSON::

    {"channels": {
        "ecom":   {"locations": "all", "default_buffer": 1, "buffers": {"STORE-12": 3}},
        "pickup": {"locations": ["STORE-12", "STORE-14"], "low_stock": 3}
    },
     "low_stock": 5}

``locations`` is ``"all"`` or a non-empty list of location ids; ``buffers`` maps a location to the
units held back from that channel (``default_buffer``, default 0, applies to every other eligible
location). ``low_stock`` (default 0: none) is the level below which the change feed reports a
location's share of the channel as low (:mod:`availability.feed`); the top-level ``low_stock`` is the
same for every location with no buffer (no channel). Channel network ATS = Σ over eligible locations
of max(0, ATS - buffer). With no channel named: every location, no buffer. Pure but for
:func:`load_channels`, which the worker's and the API's entry points call once to read the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .events import MAX_QTY, ChannelName, LocationId

Buffer = Annotated[int, Field(ge=0, le=MAX_QTY)]
Level = Buffer  # a low-stock level: units, like a buffer


class ChannelsError(ValueError):
    """The channels file is not valid; the message says where and why."""


class ChannelsFileError(Exception):
    """``ATS_CHANNELS_FILE`` cannot be read or is not valid (the message names the file)."""


class ChannelView(BaseModel):
    """One channel: eligible locations (``None`` = all) and the buffer held back per location."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    locations: Literal["all"] | Annotated[list[LocationId], Field(min_length=1)] = "all"
    default_buffer: Buffer = 0
    buffers: dict[LocationId, Buffer] = Field(default_factory=dict)
    low_stock: Level = 0

    @model_validator(mode="after")
    def _consistent(self) -> ChannelView:
        if self.locations != "all":
            if len(set(self.locations)) != len(self.locations):
                raise ValueError("a location is listed twice")
            stray = sorted(set(self.buffers) - set(self.locations))
            if stray:
                raise ValueError(f"buffers name location(s) not in the channel's locations: {stray}")
        return self

    @property
    def eligible_locations(self) -> frozenset[str] | None:
        """The eligible locations, or ``None`` when every location is eligible."""
        return None if self.locations == "all" else frozenset(self.locations)

    def eligible(self, location_id: str) -> bool:
        return self.locations == "all" or location_id in self.locations

    def buffer(self, location_id: str) -> int:
        return self.buffers.get(location_id, self.default_buffer)


#: the view used when no channel is named: every location, no buffer
ALL_LOCATIONS = ChannelView()


class ChannelViews(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    channels: dict[ChannelName, ChannelView] = Field(default_factory=dict)
    low_stock: Level = 0

    def get(self, name: str | None) -> ChannelView | None:
        """The named view (``ALL_LOCATIONS`` for no name); ``None`` for a channel that is not configured."""
        if name is None:
            return ALL_LOCATIONS
        return self.channels.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self.channels)


def parse_channels(text: str | bytes) -> ChannelViews:
    """The channels file's content → views; raises :class:`ChannelsError` naming the field at fault."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ChannelsError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ChannelsError('must be a JSON object like {"channels": {"ecom": {"locations": "all"}}}')
    try:
        return ChannelViews.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "(top level)"
            problems.append(f"{where}: {error['msg']}")
        raise ChannelsError("; ".join(problems)) from None


def load_channels(path: Path | None) -> ChannelViews:
    """The views of ``ATS_CHANNELS_FILE`` (none set: no channel); raises :class:`ChannelsFileError`."""
    if path is None:
        return ChannelViews()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ChannelsFileError(f"ATS_CHANNELS_FILE={path}: cannot read it: {exc}") from None
    try:
        return parse_channels(text)
    except ChannelsError as exc:
        raise ChannelsFileError(f"ATS_CHANNELS_FILE={path}: {exc}") from None


def channel_ats(view: ChannelView, location_id: str, ats: int) -> int:
    """What one location offers the channel: 0 if not eligible, else max(0, ATS - buffer)."""
    if not view.eligible(location_id):
        return 0
    return max(0, ats - view.buffer(location_id))


def network_ats(view: ChannelView, ats_by_location: Mapping[str, int] | Iterable[tuple[str, int]]) -> int:
    """Channel network ATS = Σ over eligible locations of max(0, ATS - buffer)."""
    pairs = ats_by_location.items() if isinstance(ats_by_location, Mapping) else ats_by_location
    return sum(channel_ats(view, location_id, ats) for location_id, ats in pairs)
