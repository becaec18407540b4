"""Calendar: the paper's sentence, from an injected clock, $TOOLFORMER_TODAY, or the real date."""

from __future__ import annotations

import datetime as dt

import pytest

from toolformer.calls import Call
from toolformer.tools.calendar_tool import TODAY_ENV, calendar_tool, format_date, today


def test_paper_example_from_injected_clock() -> None:
    tool = calendar_tool(clock=lambda: dt.date(2023, 1, 30))
    out = tool.run(Call("Calendar"))
    assert (out.text, out.ok) == ("Today is Monday, January 30, 2023.", True)


def test_clock_may_return_a_datetime() -> None:
    tool = calendar_tool(clock=lambda: dt.datetime(2024, 2, 29, 23, 59))
    assert tool.run(Call("Calendar")).text == "Today is Thursday, February 29, 2024."


def test_env_overrides_the_real_date(monkeypatch) -> None:
    monkeypatch.setenv(TODAY_ENV, "2000-01-01")
    assert calendar_tool().run(Call("Calendar")).text == "Today is Saturday, January 1, 2000."


def test_injected_clock_wins_over_env(monkeypatch) -> None:
    monkeypatch.setenv(TODAY_ENV, "2000-01-01")
    assert today(lambda: dt.date(2023, 1, 30)) == dt.date(2023, 1, 30)


def test_bad_env_value_is_an_error_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv(TODAY_ENV, "30/01/2023")
    out = calendar_tool().run(Call("Calendar"))
    assert (
        not out.ok and out.text.startswith("error: ") and TODAY_ENV in out.text and "30/01/2023" in out.text
    )


def test_real_date_by_default(monkeypatch) -> None:
    monkeypatch.delenv(TODAY_ENV, raising=False)
    before = dt.date.today()
    text = calendar_tool().run(Call("Calendar")).text
    assert text in {format_date(before), format_date(dt.date.today())}
    assert str(before.year) in text


def test_every_weekday_and_month_name() -> None:
    days = {format_date(dt.date(2023, 1, 30) + dt.timedelta(days=i)).split(",")[0] for i in range(7)}
    assert days == {
        f"Today is {d}"
        for d in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    }
    months = {format_date(dt.date(2023, m, 1)).split(", ")[1].split(" ")[0] for m in range(1, 13)}
    assert len(months) == 12 and "September" in months


@pytest.mark.parametrize(
    "call",
    [Call("Calendar", "today"), Call("Calendar", arguments={}), Call("Calendar", arguments={"input": ""})],
)
def test_ignores_arguments(call: Call) -> None:
    out = calendar_tool(clock=lambda: dt.date(2023, 1, 30)).run(call)
    assert out.ok and out.text == "Today is Monday, January 30, 2023."


def test_no_parameters_in_schema() -> None:
    assert calendar_tool().parameters["properties"] == {}
