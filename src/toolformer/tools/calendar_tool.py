"""The Calendar tool: today's date as the paper writes it, "Today is Monday, January 30, 2023.", from a clock.

Named `calendar_tool` so it never shadows the standard library's `calendar` module.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

from toolformer.errors import ConfigError
from toolformer.tools.base import Tool

TODAY_ENV = "TOOLFORMER_TODAY"

Clock = Callable[[], "dt.date"]


def today(clock: Clock | None = None) -> dt.date:
    """The date to report: the injected clock if given, else `$TOOLFORMER_TODAY` (YYYY-MM-DD), else the real date."""
    if clock is not None:
        value = clock()
        return value.date() if isinstance(value, dt.datetime) else value
    fixed = os.environ.get(TODAY_ENV, "").strip()
    if fixed:
        try:
            return dt.date.fromisoformat(fixed)
        except ValueError as exc:
            raise ConfigError(f"{TODAY_ENV}={fixed!r} is not a date (expected YYYY-MM-DD)") from exc
    return dt.date.today()


def format_date(day: dt.date) -> str:
    """'Today is Monday, January 30, 2023.' (English names whatever the locale)."""
    return f"Today is {_WEEKDAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {day.day}, {day.year}."


def calendar_tool(clock: Clock | None = None) -> Tool:
    """A Calendar Tool (no parameters) reading `clock`, or `$TOOLFORMER_TODAY`, or the real date at each call."""
    return Tool(
        name="Calendar",
        description="Return today's date, e.g. 'Today is Monday, January 30, 2023.' Takes no input.",
        fn=lambda **_ignored: format_date(today(clock)),  # a JSON call may still send {"input": ""}
        parameters={"type": "object", "properties": {}},
        timeout=1.0,
        examples=("Calendar()",),
    )


# Fixed English names: strftime's %A/%B follow the process locale.
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
