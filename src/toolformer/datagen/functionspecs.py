"""The actions, value pools and answers JSON function-calling rows are built from (`datagen.functions`).

Every word here was written for this project (invented names, common cities, words and phrases); nothing comes from
BFCL or another benchmark. An action's requests name each parameter by its first synonym: `{city}`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------------------------------------------------------
# Value pools (invented or common words; no benchmark text)

POOLS: dict[str, tuple[str, ...]] = {
    "city": (
        "Oslo",
        "Lima",
        "Nairobi",
        "Hanoi",
        "Porto",
        "Quito",
        "Tbilisi",
        "Perth",
        "Reykjavik",
        "Accra",
        "Montreal",
        "Bergen",
        "Cusco",
        "Da Nang",
        "Valencia",
        "Krakow",
        "Osaka",
        "Tallinn",
        "Cebu",
        "Fez",
    ),
    "person": (
        "Amara",
        "Jonas",
        "Priya",
        "Mateo",
        "Ingrid",
        "Kofi",
        "Lena",
        "Tomasz",
        "Yuki",
        "Farah",
        "Emil",
        "Noor",
        "Dario",
        "Sofia",
        "Bram",
        "Ines",
    ),
    "unit_pair": (
        "kilometers:miles",
        "miles:kilometers",
        "kilograms:pounds",
        "pounds:kilograms",
        "liters:gallons",
        "celsius:fahrenheit",
        "meters:feet",
        "inches:centimeters",
    ),
    "currency": ("EUR", "USD", "JPY", "GBP", "NOK", "BRL", "INR", "CAD", "KES", "PLN"),
    "language": ("Spanish", "German", "Japanese", "Swahili", "Polish", "Portuguese", "Korean", "Dutch"),
    "phrase": (
        "good morning",
        "where is the station",
        "thank you very much",
        "the shop opens at nine",
        "I would like a coffee",
        "see you tomorrow",
    ),
    "query": (
        "electric bikes",
        "sourdough starter",
        "hiking boots",
        "noise cancelling headphones",
        "vegan lasagna",
        "standing desks",
        "used sailboats",
        "houseplants for low light",
    ),
    "cuisine": ("Thai", "Ethiopian", "Peruvian", "Italian", "Lebanese", "Korean", "Mexican"),
    "artist": ("Nina Simone", "Fela Kuti", "Bjork", "Miles Davis", "Caetano Veloso", "Aurora"),
    "ticker": ("ACME", "GLOBX", "NRDX", "ZEPH", "QNTM", "VRTA"),
    "topic": (
        "project kickoff",
        "dentist appointment",
        "team lunch",
        "budget review",
        "yoga class",
        "parent meeting",
        "car service",
    ),
    "message": (
        "running ten minutes late",
        "the keys are under the mat",
        "dinner is at seven",
        "please call me back",
        "the package arrived",
        "happy birthday",
    ),
    "metric": ("celsius", "fahrenheit"),
}


@dataclass(frozen=True)
class Param:
    """A parameter: its name synonyms, JSON type, value pool, description, and the phrase that states it when it
    is optional (`{v}` is its value)."""

    names: tuple[str, ...]
    kind: str
    pool: str
    description: str
    required: bool = True
    phrase: str = ""


@dataclass(frozen=True)
class Action:
    """A thing a function can do: name parts, description, parameters, and requests (`{p}`: the value of the
    parameter whose first name is p)."""

    verbs: tuple[str, ...]
    nouns: tuple[str, ...]
    description: str
    params: tuple[Param, ...]
    requests: tuple[str, ...]
    task: str  # what it does, for a no-call answer: "check the weather"


def _p(names: str, kind: str, pool: str, description: str, required: bool = True, phrase: str = "") -> Param:
    return Param(tuple(names.split()), kind, pool, description, required, phrase)


ACTIONS: tuple[Action, ...] = (
    Action(
        ("get", "fetch", "lookup"),
        ("weather", "forecast", "conditions"),
        "Current weather for a city.",
        (
            _p("city location place", "string", "city", "The city."),
            _p("unit units scale", "string", "metric", "Temperature scale.", False, "Use {v}."),
        ),
        (
            "What's the weather like in {city}?",
            "How warm is it in {city} right now?",
            "Check the current conditions in {city}.",
        ),
        "check the weather",
    ),
    Action(
        ("convert", "transform"),
        ("units", "measure", "quantity"),
        "Convert a quantity between units.",
        (
            _p("value amount quantity", "number", "amount", "The quantity."),
            _p("from_unit source_unit unit_in", "string", "unit_from", "Unit of the value."),
            _p("to_unit target_unit unit_out", "string", "unit_to", "Unit wanted."),
        ),
        ("Convert {value} {from_unit} to {to_unit}.", "How many {to_unit} is {value} {from_unit}?"),
        "convert units",
    ),
    Action(
        ("convert", "exchange"),
        ("currency", "money"),
        "Convert money between currencies.",
        (
            _p("amount value sum", "number", "amount", "The amount."),
            _p("from_currency base source", "string", "currency", "ISO code of the amount."),
            _p("to_currency target quote", "string", "currency2", "ISO code wanted."),
        ),
        (
            "How much is {amount} {from_currency} in {to_currency}?",
            "Exchange {amount} {from_currency} into {to_currency}.",
        ),
        "convert currencies",
    ),
    Action(
        ("book", "reserve"),
        ("hotel", "room", "stay"),
        "Book a hotel room.",
        (
            _p("city destination location", "string", "city", "Where to stay."),
            _p("check_in arrival start_date", "string", "date", "Arrival date, YYYY-MM-DD."),
            _p("nights num_nights duration", "integer", "small", "Number of nights."),
            _p("guests people party_size", "integer", "guests", "Guests.", False, "We are {v} guests."),
        ),
        (
            "Book a hotel in {city} from {check_in} for {nights} nights.",
            "I need a room in {city}, arriving {check_in}, staying {nights} nights.",
        ),
        "book hotels",
    ),
    Action(
        ("book", "reserve"),
        ("table", "restaurant", "dinner"),
        "Reserve a restaurant table.",
        (
            _p("cuisine food_type style", "string", "cuisine", "Kind of food."),
            _p("city location area", "string", "city", "City."),
            _p("party_size guests people", "integer", "guests", "Number of people."),
            _p("time at hour", "string", "time", "Time, HH:MM.", False, "Around {v} please."),
        ),
        (
            "Reserve a {cuisine} restaurant in {city} for {party_size} people.",
            "Find us a table for {party_size} at a {cuisine} place in {city}.",
        ),
        "reserve restaurants",
    ),
    Action(
        ("search", "find", "query"),
        ("products", "shop", "items"),
        "Search a shop's catalogue.",
        (
            _p("query keywords terms", "string", "query", "What to look for."),
            _p(
                "max_price price_limit budget",
                "number",
                "price",
                "Highest price.",
                False,
                "Nothing above {v}.",
            ),
        ),
        ("Search the shop for {query}.", "Find {query} for me.", "Look up {query} in the catalogue."),
        "search a shop",
    ),
    Action(
        ("calculate", "compute"),
        ("tip", "gratuity"),
        "Tip on a bill.",
        (
            _p("bill amount total", "number", "amount", "Bill total."),
            _p("percent rate percentage", "number", "percent", "Tip percentage."),
        ),
        ("What is a {percent} percent tip on {bill}?", "Work out the tip on a bill of {bill} at {percent}%."),
        "work out tips",
    ),
    Action(
        ("calculate", "compute"),
        ("loan_payment", "mortgage", "installment"),
        "Monthly loan payment.",
        (
            _p("principal amount loan", "number", "big", "Amount borrowed."),
            _p("rate annual_rate interest", "number", "percent", "Yearly interest in percent."),
            _p("years term duration", "integer", "years", "Length in years."),
        ),
        (
            "What is the monthly payment on {principal} at {rate}% over {years} years?",
            "I borrow {principal} at {rate} percent for {years} years: monthly payment?",
        ),
        "compute loan payments",
    ),
    Action(
        ("create", "add", "schedule"),
        ("event", "meeting", "appointment"),
        "Add an event to the calendar.",
        (
            _p("title name subject", "string", "topic", "Event title."),
            _p("date day on", "string", "date", "Date, YYYY-MM-DD."),
            _p("time start starts_at", "string", "time", "Start, HH:MM.", False, "It starts at {v}."),
        ),
        ("Put {title} on my calendar on {date}.", "Schedule {title} for {date}."),
        "edit the calendar",
    ),
    Action(
        ("send", "post"),
        ("message", "text", "sms"),
        "Send a text message.",
        (
            _p("recipient to contact", "string", "person", "Who gets it."),
            _p("body text content", "string", "message", "The message."),
        ),
        ("Text {recipient} that {body}.", "Send {recipient} a message: {body}."),
        "send messages",
    ),
    Action(
        ("set", "create"),
        ("reminder", "alarm", "timer"),
        "Set a reminder.",
        (
            _p("note label what", "string", "topic", "What to remember."),
            _p("minutes in_minutes delay", "integer", "minutes", "Minutes from now."),
        ),
        ("Remind me about {note} in {minutes} minutes.", "In {minutes} minutes, remind me of {note}."),
        "set reminders",
    ),
    Action(
        ("play", "start"),
        ("music", "songs", "playlist"),
        "Play music by an artist.",
        (
            _p("artist musician performer", "string", "artist", "Who to play."),
            _p("shuffle random shuffled", "boolean", "true", "Shuffle.", False, "Shuffle them."),
        ),
        ("Play some {artist}.", "Put on songs by {artist}."),
        "play music",
    ),
    Action(
        ("translate",),
        ("text", "phrase", "sentence"),
        "Translate a phrase.",
        (
            _p("text phrase source_text", "string", "phrase", "What to translate."),
            _p("target_language language to_lang", "string", "language", "Language wanted."),
        ),
        ("How do you say '{text}' in {target_language}?", "Translate '{text}' into {target_language}."),
        "translate",
    ),
    Action(
        ("get", "fetch"),
        ("stock_price", "quote", "share_price"),
        "Latest price of a stock.",
        (_p("ticker symbol stock", "string", "ticker", "Ticker symbol."),),
        ("What is {ticker} trading at?", "Get me the share price of {ticker}."),
        "look up stock prices",
    ),
)
SMALL_TALK = (
    ("Hi there!", "Hello! How can I help you today?"),
    ("Thanks, that was helpful.", "You're welcome! Let me know if you need anything else."),
    ("Good night!", "Good night! Sleep well."),
    ("Who are you?", "I'm an AI assistant. I can answer questions and use the functions I'm given."),
    (
        "Can you tell me a joke?",
        "Why did the scarecrow win an award? Because he was outstanding in his field.",
    ),
)
NO_FIT = (
    "None of the functions I have can {task}, so I can't do that here.",
    "I can't {task} with the functions available to me.",
    "Sorry, the available functions don't let me {task}.",
)
PREFIXES = ("", "", "", "api_", "svc_", "my_", "app_", "tools_", "v2_")


def value_of(pool: str, rng: random.Random) -> Any:
    """A random value from `pool` (a POOLS name, or a number or date kind)."""
    if pool == "amount":
        return rng.choice((rng.randint(2, 900), round(rng.uniform(1, 500), rng.choice((1, 2)))))
    if pool == "big":
        return rng.randrange(5_000, 600_000, 500)
    if pool == "price":
        return rng.randrange(20, 2_000, 10)
    if pool == "percent":
        return rng.choice((5, 10, 12, 15, 18, 20, 3.5, 4.25, 6.5, 7.9))
    if pool in ("small", "years", "minutes", "guests"):
        low, high = {"small": (1, 14), "years": (2, 30), "minutes": (2, 90), "guests": (2, 12)}[pool]
        return rng.randint(low, high)
    if pool == "date":
        return f"{rng.randint(2025, 2028)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if pool == "time":
        return f"{rng.randint(7, 21):02d}:{rng.choice(('00', '15', '30', '45'))}"
    if pool == "true":
        return True
    return rng.choice(POOLS[pool])
