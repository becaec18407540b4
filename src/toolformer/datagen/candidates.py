"""Candidate texts for every tool, from sources that are no evaluation set: the input of the all-tools mixture.

A 135M model cannot follow the paper's annotation prompt P(x), so candidates come from rules over ordinary data
(the paper allows any proposer: the loss filter is what makes it Toolformer). Each text is written in the shape
the model meets at use — "Question: …\\nAnswer: …" (the zero-shot prompt of `toolformer ask` and of the math, QA
and temporal evaluations) or a statement to complete (the LAMA cloze) — with the candidate call `[Tool(input)]`
where the answer starts. `toolformer annotate --proposer data` takes the calls out, runs the tools and keeps a
call only when L⁻ − L⁺ ≥ τ_f; `datagen.mixture.assemble` then writes the training file from what was kept.

Sources (`candidates`), each text tagged `meta.kind`:
- calculator: GSM8K *train* problems, one composed expression before the answer (`proposers.data.gsm8k_answer_document`).
- wikisearch: questions made from the first sentence of Wikipedia Vital Articles leads (en): "Who was a German-born
  theoretical physicist …?" → the article's title, "What is X?" → its definition, "When was X born?" → the date.
  The query is the question itself: the one thing a small model can always write.
- qa: statements to complete, cut before an object in a lead sentence ("X was born in" → "Ulm"); the QA input is
  the statement, as the LAMA prompt is.
- calendar: questions about today's date, weekday, month and year (`calendar_texts`, one date per annotate run).
- mt: Spanish sentences of the Spanish Vital Articles leads, the answer written by the MT tool itself.
- plain: passages of English leads and conversational prompts (`CHAT_PROMPTS`, answered by the base model with no
  tools): texts where no call belongs, so the model also learns when *not* to call.
No record of ASDiv, SVAMP, MAWPS, LAMA, NQ, WebQuestions, TriviaQA, SituatedQA or BBH is read; `overlap` measures
n-gram overlap between the texts and the shipped dev files (`datagen.mixture.overlap`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from toolformer.calls import quote
from toolformer.datagen.io import read_jsonl, write_jsonl_atomic

KINDS = ("calculator", "wikisearch", "qa", "calendar", "mt", "plain")
TOOL_OF_KIND = {
    "calculator": "Calculator",
    "wikisearch": "WikiSearch",
    "qa": "QA",
    "calendar": "Calendar",
    "mt": "MT",
}
MAX_QUESTION_WORDS = 24
MAX_ANSWER_WORDS = 12

# Conversational prompts for the no-call texts (training only). The evaluation's no-tool prompts are written
# separately (`toolformer/data/evals/notool_chat.jsonl`) and none of these is among them.
CHAT_PROMPTS = (
    "Compose a few lines about a lighthouse.", "Tell me a joke about cats.", "How do I make a cup of tea?",
    "Give me a tip for staying focused while studying.", "Describe a sunset in two sentences.",
    "What should I name my new puppy?", "Write a friendly greeting for a birthday card.",
    "How can I be more patient with my friends?", "Suggest a fun activity for a rainy afternoon.",
    "Write a limerick about a frog.", "Say something kind to someone who had a bad day.",
    "What is a good way to start a story?", "Describe the smell of fresh bread.",
    "Give me a motivational quote for Monday morning.", "Write two lines about autumn leaves.",
    "How do I politely decline an invitation?", "Hello! How are you today?", "Thank you for your help!",
    "Write a short thank-you note to a teacher.", "What makes a good neighbour?",
    "Describe your favourite kind of weather.", "Write a tongue twister about bees.",
    "How should I prepare for a job interview?", "Tell me a bedtime story in three sentences.",
    "Rewrite this sentence more politely: Give me the book.", "Write a slogan for a lemonade stand.",
    "What are some ways to relax after work?", "Write a short apology for being late.",
    "Describe a busy city street.", "Give me an idea for a painting.", "Compose a riddle about the moon.",
    "Write a cheerful message for a friend who is moving away.", "How do I keep my houseplants healthy?",
    "Invent a conversation between a kettle and a teapot.", "Good morning!", "Can you cheer me up?",
    "Write two lines about snowfall in a quiet town.", "What is the best way to learn to draw?",
    "Describe the sound of rain on a roof.", "Write an invitation to a picnic.",
    "Give me three words that describe summer.", "Write a short story opening about a lost key.",
    "How can I write neater handwriting?", "Write a note to remind my roommate to water the plants.",
    "What do you like about music?", "Make up a name for a friendly dragon.",
    "Write a caption for a photo of mountains.", "Summarise why sleep is important in one sentence.",
    "Rephrase: The meeting has been moved to later.", "Write a wish for a happy new year.",
)  # fmt: skip

# More no-call prompts: creative forms × topics and advice, answered by the base model like CHAT_PROMPTS.
CREATIVE_FORMS = ("a haiku", "a little poem", "two rhyming lines", "a limerick", "a tiny story", "a riddle",
                  "a song verse", "a postcard message")  # fmt: skip
CREATIVE_TOPICS = ("a lighthouse", "autumn leaves", "the ocean", "a sleepy cat", "morning coffee", "mountains",
                   "a train journey", "friendship", "the moon", "a vegetable garden", "winter mornings",
                   "a lost umbrella", "city lights", "a quiet library", "the first day of school", "a campfire",
                   "a river", "an old bicycle", "a ticking clock", "springtime")  # fmt: skip
ADVICE_TOPICS = ("saving money", "learning a language", "keeping a tidy desk", "running a first 5k",
                 "writing a good email", "making new friends", "cooking rice", "staying calm before an exam",
                 "caring for a goldfish", "packing for a trip", "drinking more water", "reading more books")  # fmt: skip


# Session 10: a second batch, appended so that the ids (list positions) of the texts made before stay the same.
MORE_TOPICS = ("a paper boat", "a summer picnic", "a rainbow after a storm", "a busy bakery", "a snowman",
               "a kite on a windy day", "a firefly", "an old oak tree", "a harbour at dawn", "a pair of old boots",
               "the smell of pine", "a birthday cake", "a sleepy village", "a cup of cocoa", "the first snowflake",
               "a lighthouse keeper's dog", "sunflowers", "a jar of honey", "a shooting star", "a puddle")  # fmt: skip
MORE_FORMS = ("a haiku", "a few lines", "a two-line rhyme", "a tiny fable")
MORE_REQUESTS = ("How do I {}?", "What is a nice way to {}?")
MORE_TASKS = ("say thank you to a neighbour", "welcome a new colleague", "cheer up a friend", "end a long email",
              "celebrate a small win", "ask for help politely", "start a journal", "spend a lazy Sunday",
              "decorate a small room", "plan a surprise party", "introduce myself in a meeting",
              "pick a name for a houseplant")  # fmt: skip


# Session 12: a third batch, after the stop-11 model called a tool on every conversational prompt at k = 10 (the
# " [" after "Answer:" ranked 0-4 among the tokens: 3,200 texts answer a question with a call, ~330 without one).
# Kinds the first two batches lacked: opinions, rewrites, greetings, feelings, recommendations, role play, lists.
THIRD_TEMPLATES = (
    "What do you think about {}?", "Do you enjoy {}?", "Why do people love {}?", "Tell me something nice about {}.",
    "Write a friendly text message about {}.", "Share a happy thought about {}.",
    "Describe {} to someone who has never seen it.", "Give me a creative idea involving {}.",
    "Write a short diary entry about {}.", "Pretend you are {} and say hello.",
    "Make a list of three feelings {} brings.", "Write a cozy sentence about {}.",
)  # fmt: skip
THIRD_SUBJECTS = ("rainy Sundays", "homemade soup", "a walk in the park", "board games with family",
                  "a new notebook", "baking cookies", "the sound of waves", "learning to whistle", "garden flowers",
                  "a long bus ride", "a warm blanket", "painting with watercolours", "a picnic by the lake",
                  "watching clouds", "an old photo album", "a cat asleep in the sun", "a quiet morning",
                  "singing in the shower", "a surprise letter", "a tidy kitchen")  # fmt: skip
THIRD_FIXED = (
    "Hey, how is it going?", "Nice to meet you!", "Good evening, friend.", "Thanks, that was helpful.",
    "I feel a bit tired today.", "I just finished my homework!", "I am nervous about my first day at a new job.",
    "Can you say something encouraging?", "What would be a fun thing to do this weekend?",
    "Say goodnight to me in a poetic way.", "Tell me why kindness matters.", "How do I make my room feel calmer?",
    "Rewrite politely: Move your car.", "Make this friendlier: We need the files.",
    "Shorten this: I would like to take this opportunity to thank you for all of your help.",
    "Turn this into a question: The shop opens early.", "Say this more simply: The outcome was unfavourable.",
    "Rewrite as a headline: Local children plant a hundred trees.", "Suggest a title for a story about a brave mouse.",
    "Give me a pep talk before a football match.", "Write a toast for a friend's wedding.",
    "Write a welcome sign for a school library.", "What is a nice compliment for a cook?",
    "Invent a new ice cream flavour and describe it.", "Describe a perfect lazy afternoon.",
    "Write a gentle reminder to drink water.", "How can I be a better listener?",
    "What should I write in a get-well card?", "Suggest three names for a goldfish.",
    "Write a short thank-you to a bus driver.",
)  # fmt: skip


def no_call_prompts() -> list[str]:
    """Every conversational prompt of the no-call texts: CHAT_PROMPTS, then the creative and advice templates,
    then the second batch (`MORE_*`), then the third (`THIRD_*`)."""
    out = list(CHAT_PROMPTS)
    out += [f"Write {form} about {topic}." for form in CREATIVE_FORMS for topic in CREATIVE_TOPICS]
    out += [f"Give me two tips for {topic}." for topic in ADVICE_TOPICS]
    out += [f"Write {form} about {topic}." for form in MORE_FORMS for topic in MORE_TOPICS]
    out += [req.format(task) for req in MORE_REQUESTS for task in MORE_TASKS]
    out += [t.format(subject) for t in THIRD_TEMPLATES for subject in THIRD_SUBJECTS]
    out += list(THIRD_FIXED)
    return out


def calendar_dates(n: int, start: _dt.date = _dt.date(2019, 1, 7), step_days: int = 113) -> list[_dt.date]:
    """`n` dates `step_days` apart from `start`: every weekday and month comes up (113 = 16 weeks + 1 day)."""
    return [start + _dt.timedelta(days=i * step_days) for i in range(n)]


CALENDAR_QUESTIONS = (
    ("What day of the week is it today?", "It is {weekday}."),
    ("What day is it today?", "Today is {weekday}."),
    ("Which day of the week is today?", "{weekday}."),
    ("What is today's date?", "Today is {month} {day}, {year}."),
    ("What is the date today?", "It is {month} {day}, {year}."),
    ("What year is it?", "It is {year}."),
    ("What year is it now?", "{year}."),
    ("Which month are we in?", "We are in {month}."),
    ("What month is it?", "It is {month}."),
    ("Is today {weekday}?", "Yes, today is {weekday}."),
    ("What will the date be tomorrow?", "Tomorrow is {t_month} {t_day}, {t_year}."),
    ("What day of the week will it be tomorrow?", "Tomorrow is {t_weekday}."),
    ("What was the date yesterday?", "Yesterday was {y_month} {y_day}, {y_year}."),
    ("How many days are left in this year?", "{days_left} days."),
    # Session 11: the weekday answers above never passed the filter (the one weekday token weighs too little in
    # L_i); these carry the whole date after the weekday, as the Calendar's own result does.
    ("What day is it?", "Today is {weekday}, {month} {day}, {year}."),
    ("What day is it today?", "It is {weekday}, {month} {day}, {year}."),
    ("What's today?", "Today is {weekday}, {month} {day}, {year}."),
    ("What day of the week is it?", "It is {weekday}, {month} {day}."),
    ("Do you know what day it is today?", "Yes, today is {weekday}, {month} {day}, {year}."),
    ("Can you tell me today's date?", "Sure. Today is {month} {day}, {year}."),
    ("What's the date today?", "Today's date is {month} {day}, {year}."),
    ("What is the current date?", "The current date is {month} {day}, {year}."),
    ("Tell me the date.", "It is {weekday}, {month} {day}, {year}."),
    ("What is the current year?", "The current year is {year}."),
    ("Which year are we in?", "We are in {year}."),
    ("What month and year is it?", "It is {month} {year}."),
    ("What day was it yesterday?", "Yesterday was {y_weekday}, {y_month} {y_day}, {y_year}."),
    ("What day is it tomorrow?", "Tomorrow is {t_weekday}, {t_month} {t_day}, {t_year}."),
    ("What date is it tomorrow?", "Tomorrow is {t_month} {t_day}, {t_year}."),
    ("Is it a weekday or the weekend today?", "Today is {weekday}, {month} {day}, {year}."),
    ("Which date is it now?", "It is {month} {day}, {year}."),
    ("How many days are left until the new year?", "There are {days_left} days left in {year}."),
    ("What is today's day and date?", "Today is {weekday}, {month} {day}, {year}."),
    ("What's the day today?", "It's {weekday}, {month} {day}, {year}."),
)

MT_QUESTIONS = (
    ('What does "{src}" mean?', 'It means "{en}".'),
    ('What does "{src}" mean in English?', "{en}"),
    ("Translate into English: {src}", "{en}"),
    ('How do you say "{src}" in English?', '"{en}"'),
    ('What is the English for "{src}"?', "{en}"),
)

_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZÁÉÍÓÚÑ¿¡\"“(])")
_PARENS = re.compile(r"\s*\([^()]*\)")
_FIRST = re.compile(r"^(?P<subj>[^,;:()]{2,80}?)\s+(?P<cop>is|was|are|were)\s+(?P<pred>(?:an?|the|one)\s.+)$")
_LIFE = re.compile(
    r"\((?:[^()]*?;\s*)?(?:born\s+)?(?P<birth>\d{1,2}\s+\w+\s+\d{3,4}|\w+\s+\d{1,2},\s+\d{3,4})"
)
_PERSON_HINT = re.compile(r"\b(?:born|\d{3,4}\s*[–-]\s*\d{3,4})\b")
_RELATIONS = (
    "was born in", "died in", "is the capital of", "is the capital city of", "is located in", "was founded by",
    "was founded in", "was written by", "was directed by", "was developed by", "was designed by",
    "is a member of", "is the official language of", "was invented by", "was discovered by", "was composed by",
    "was painted by", "is a city in", "is a country in", "is a river in", "is located on", "is native to",
    "is the largest city in", "was established in", "was built in", "was released in", "is spoken in",
    "is a province of", "is a state of", "was named after", "is the currency of", "originated in",
)  # fmt: skip
_RELATION = re.compile(
    r"^(?P<prefix>.{3,140}?\b(?:" + "|".join(re.escape(r) for r in _RELATIONS) + r"))\s+"
    r"(?P<obj>(?:the\s+)?[A-Z0-9][^,.;:()]{0,60})"
)
_CLAUSE = re.compile(r"\s(?:and|or|which|who|where|when|in|on|with|from|after|before|since|by|as)\s")
MAX_PREFIX_WORDS = 14
_PRONOUN = re.compile(r"^(?:He|She|It|They)\b")


def seeded_rng(seed: int, name: str) -> random.Random:
    """A Random seeded by (seed, name): each use draws independently of the others and of their order."""
    return random.Random(int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:16], 16))


def _doc(doc_id: str, kind: str, text: str, **meta: Any) -> dict[str, Any]:
    return {"id": doc_id, "text": text, "meta": {"kind": kind, **meta}}


def _words(text: str, limit: int) -> str | None:
    words = text.split()
    return " ".join(words) if 0 < len(words) <= limit else None


def _call(tool: str, arg: str | None) -> str:
    return f"[{tool}()]" if arg is None else f"[{tool}({quote(arg)})]"


def shipped_vital() -> Path:
    """The English Vital Articles leads shipped with the package (the WikiSearch/QA corpus)."""
    return Path(str(resources.files("toolformer").joinpath("data", "vital_en.jsonl.gz")))


def sentences(text: str) -> list[str]:
    """Sentences of a lead (a regex splitter, as the search tools use)."""
    return [s.strip() for s in _SENT_END.split(text.strip()) if s.strip()]


# ------------------------------------------------------------------------------------------------ per tool


def wikisearch_texts(articles: Iterable[dict[str, Any]], seed: int = 0) -> Iterator[dict[str, Any]]:
    """Question texts from a lead's first sentence: reverse (→ title), definition (→ predicate), birth date."""
    for art in articles:
        title, lead = str(art.get("title", "")).strip(), str(art.get("text", ""))
        first = (sentences(lead) or [""])[0]
        if not title or len(title) > 60:
            continue
        clean = _PARENS.sub("", first).rstrip(".").strip()
        m = _FIRST.match(clean)
        if not m:
            continue
        subj, cop, pred = m.group("subj"), m.group("cop"), m.group("pred")
        if title.lower().split(" (")[0] not in subj.lower() and subj.lower() not in title.lower():
            continue
        person = bool(_PERSON_HINT.search(first)) or bool(
            _PERSON_HINT.search(str(art.get("description") or ""))
        )
        rng = seeded_rng(seed, title)
        pred_short = re.split(r",|;| who | which | that ", pred)[0]
        choice = rng.random()
        if choice < 0.55:
            question = _words(f"{'Who' if person else 'What'} {cop} {pred_short}?", MAX_QUESTION_WORDS)
            answer = f"{title}."
        else:
            question = f"{'Who' if person else 'What'} {cop} {title}?"
            answer = _words(pred_short.rstrip(".") + ".", MAX_ANSWER_WORDS)
        if question and answer and '"' not in question:
            query = question.rstrip("?")
            yield _doc(
                f"ws:{title}",
                "wikisearch",
                f"Question: {question}\nAnswer: {_call('WikiSearch', query)} {answer}",
            )
        life = _LIFE.search(first)
        if person and life and rng.random() < 0.5:
            question = f"When was {title} born?"
            yield _doc(
                f"ws-born:{title}",
                "wikisearch",
                f"Question: {question}\nAnswer: {_call('WikiSearch', question.rstrip('?'))} {life.group('birth')}.",
            )


def qa_texts(articles: Iterable[dict[str, Any]], seed: int = 0) -> Iterator[dict[str, Any]]:
    """Statements to complete, cut before the object of a relation in a lead sentence ("X was born in" → "Ulm")."""
    del seed  # every match is used; the order of the articles decides which come first
    for art in articles:
        title = str(art.get("title", "")).strip()
        for i, sentence in enumerate(sentences(str(art.get("text", "")))):
            sentence = _PARENS.sub("", sentence)
            if _PRONOUN.match(sentence):
                sentence = _PRONOUN.sub(title, sentence, count=1)
            m = _RELATION.match(sentence)
            if not m:
                continue
            prefix = m.group("prefix").strip()
            obj = _CLAUSE.split(m.group("obj").strip(), maxsplit=1)[0].strip()
            if len(prefix.split()) > MAX_PREFIX_WORDS or not obj or '"' in prefix:
                continue
            obj = " ".join(obj.split()[:6])
            yield _doc(f"qa:{title}:{i}", "qa", f"{prefix} {_call('QA', prefix)} {obj}.")
            break  # one statement per article keeps subjects varied


def calculator_texts(gsm8k_records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """GSM8K train problems as "Question: …\\nAnswer: [Calculator(expr)] 72" (`gsm8k_answer_document`)."""
    from toolformer.datagen.proposers.data import gsm8k_answer_document

    for record in gsm8k_records:
        doc, cands = gsm8k_answer_document(record)
        if not cands:
            continue
        c = cands[0]
        text = doc.text[: c.position] + f"[Calculator({c.args})] " + doc.text[c.position :]
        yield _doc(f"calc:{doc.id}", "calculator", text)


def short_calculator_texts(
    gsm8k_records: Iterable[dict[str, Any]], skip_ids: Iterable[str] = (), max_steps: int = 2
) -> Iterator[dict[str, Any]]:
    """GSM8K train problems of at most `max_steps` `<<…>>` steps, as `calculator_texts` writes them, skipping
    `skip_ids` (problems already used) and the GSM8K dev slice (`toolformer.heldout`).

    ASDiv, SVAMP and MAWPS are mostly one- and two-step problems; GSM8K's long ones taught the model to
    over-compose (issue 13), so the further Calculator texts are the short ones.
    """
    from toolformer.heldout import is_gsm8k_dev

    skip = set(skip_ids)
    short = (
        r
        for r in gsm8k_records
        if str(r.get("id")) not in skip
        and not is_gsm8k_dev(str(r.get("id")))
        and str(r.get("solution", "")).count("<<") <= max_steps
    )
    yield from calculator_texts(short)


def operands_before(text: str) -> bool | None:
    """Whether every number of the text's first Calculator call occurs (as digits) in the text before the call,
    or None without one. A call whose operands appear only later can still pass the loss filter (a pitfall other
    reproductions found): the mixture reports how often kept calls are of that kind."""
    from toolformer.calls import find_calls

    spans = [s for s in find_calls(text, include_incomplete=False) if s.call.name == "Calculator"]
    if not spans:
        return None
    before = set(re.findall(r"\d+(?:\.\d+)?", text[: spans[0].start].replace(",", "")))
    return all(n in before for n in re.findall(r"\d+(?:\.\d+)?", spans[0].call.args))


def _date_fields(today: _dt.date) -> dict[str, Any]:
    tomorrow, yesterday = today + _dt.timedelta(days=1), today - _dt.timedelta(days=1)
    out: dict[str, Any] = {"days_left": (_dt.date(today.year, 12, 31) - today).days}
    for prefix, d in (("", today), ("t_", tomorrow), ("y_", yesterday)):
        out |= {f"{prefix}weekday": d.strftime("%A"), f"{prefix}month": d.strftime("%B"),
                f"{prefix}day": d.day, f"{prefix}year": d.year}  # fmt: skip
    return out


def calendar_texts(today: _dt.date) -> Iterator[dict[str, Any]]:
    """Questions about today's date, answered for `today` (annotate with TOOLFORMER_TODAY set to the same day)."""
    fields = _date_fields(today)
    for i, (question, answer) in enumerate(CALENDAR_QUESTIONS):
        text = f"Question: {question.format(**fields)}\nAnswer: {_call('Calendar', None)} {answer.format(**fields)}"
        yield _doc(f"cal:{today.isoformat()}:{i}", "calendar", text, today=today.isoformat())


def mt_sentences(
    articles: Iterable[dict[str, Any]], min_words: int = 4, max_words: int = 12
) -> Iterator[tuple[str, str]]:
    """(id, sentence) of short foreign-language lead sentences, one per article, fit to be asked about."""
    for art in articles:
        for sentence in sentences(str(art.get("text", ""))):
            sentence = _PARENS.sub("", sentence).strip()
            n = len(sentence.split())
            if min_words <= n <= max_words and not re.search(r"\d{3,}|[\"“”«»\[\]]", sentence):
                yield f"mt:{art.get('id', art.get('title'))}", sentence
                break


def mt_texts(
    pairs: Iterable[tuple[str, str]], translate: Any, seed: int = 0, errors: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Questions about foreign sentences; `translate(text) -> str` (the MT tool) writes the answer. A sentence the
    tool could not translate is skipped, its answer appended to `errors` (so the caller can say why)."""
    for doc_id, src in pairs:
        english = translate(src)
        if not english or english.startswith("error:"):
            if errors is not None:
                errors.append(english or "error: empty translation")
            continue
        english = english.strip().rstrip(".")
        q, a = MT_QUESTIONS[seeded_rng(seed, doc_id).randrange(len(MT_QUESTIONS))]
        text = f"Question: {q.format(src=src)}\nAnswer: {_call('MT', src)} {a.format(en=english)}"
        yield _doc(doc_id, "mt", text)


def passage_texts(articles: Iterable[dict[str, Any]], max_chars: int = 600) -> Iterator[dict[str, Any]]:
    """Plain leads (no call belongs in them), cut at a sentence end near `max_chars`."""
    for art in articles:
        out = ""
        for s in sentences(str(art.get("text", ""))):
            if out and len(out) + len(s) > max_chars:
                break
            out = f"{out} {s}".strip()
        if out:
            yield _doc(f"plain:{art.get('title')}", "plain", out)


# ------------------------------------------------------------------------------------------------ build


def build_candidates(
    out: str | Path,
    gsm8k: str | Path,
    vital_es: str | Path | None,
    counts: dict[str, int],
    dates: Sequence[_dt.date],
    translate: Any = None,
    vital_en: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the candidate texts to annotate: `main.jsonl` (calculator, wikisearch, qa), `calculator.jsonl` (the
    next `calculator_more` GSM8K problems), `calculator-short.jsonl` (`calculator_short` further problems of
    one or two steps, `short_calculator_texts`), `calculator-onestep.jsonl` (`one_step` problems from
    `wordproblems`), `mt.jsonl`, `calendar-DATE.jsonl` (one per date: annotate each with
    TOOLFORMER_TODAY=DATE) and `plain.jsonl` (no calls).

    `counts` caps each kind (kind -> number of texts); articles are taken in a seeded shuffle, so the plain
    passages and the question texts come from different articles. Returns {file: {kind: count}}, and under
    "notes" {file: why texts were skipped} when any were (e.g. the MT tool answering errors with no translator).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    articles = list(read_jsonl(vital_en or shipped_vital()))
    seeded_rng(seed, "articles").shuffle(articles)
    n_plain = counts.get("plain", 0)
    plain_articles, question_articles = articles[:n_plain], articles[n_plain:]
    take = lambda kind, it: list(itertools.islice(it, counts.get(kind, 0)))  # noqa: E731
    notes: dict[str, str] = {}
    # GSM8K read once: the first `calculator` composable problems go to main, the next `calculator_more` apart,
    # then (`calculator_short`) the short ones not among them.
    problems = list(read_jsonl(gsm8k))
    calc = list(
        itertools.islice(
            calculator_texts(problems),
            counts.get("calculator", 0) + counts.get("calculator_more", 0),
        )
    )
    main = (
        calc[: counts.get("calculator", 0)]
        + take("wikisearch", wikisearch_texts(question_articles, seed))
        + take("qa", qa_texts(question_articles, seed))
    )
    seeded_rng(seed, "main").shuffle(main)
    files: dict[str, list[dict[str, Any]]] = {
        "main.jsonl": main,
        "plain.jsonl": take("plain", passage_texts(plain_articles)),
    }
    if counts.get("calculator_more", 0):  # the next GSM8K problems, Calculator only (cheap to annotate)
        files["calculator.jsonl"] = calc[counts.get("calculator", 0) :]
    if counts.get("calculator_short", 0):  # then the short problems not used above, dev slice excluded
        used = [str(r["id"]).split(":", 1)[1] for r in calc]
        files["calculator-short.jsonl"] = list(
            itertools.islice(short_calculator_texts(problems, used), counts["calculator_short"])
        )
    if counts.get("one_step", 0):  # one-step problems written from schemata (`wordproblems`), not GSM8K
        from toolformer.datagen.wordproblems import one_step_texts

        files["calculator-onestep.jsonl"] = list(one_step_texts(counts["one_step"], seed))
    if vital_es is not None and translate is not None and counts.get("mt", 0):
        es = list(read_jsonl(vital_es))
        seeded_rng(seed, "es").shuffle(es)
        errors: list[str] = []
        files["mt.jsonl"] = take("mt", mt_texts(mt_sentences(es), translate, seed, errors))
        # Nothing dropped silently: how many, and the tool's first answer (it names what to install).
        if errors:
            notes["mt.jsonl"] = f"{len(errors)} sentences skipped: the MT tool answered {errors[0]!r}"
    per_date = counts.get("calendar", 0)
    for day in dates:
        files[f"calendar-{day.isoformat()}.jsonl"] = list(itertools.islice(calendar_texts(day), per_date))
    summary: dict[str, Any] = {}
    for name, rows in files.items():
        write_jsonl(out / name, rows)
        summary[name] = count_kinds(rows)
    if notes:
        summary["notes"] = notes
    (out / "candidates.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def chat_texts(generate: Any, prompts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """No-call texts: each prompt answered by `generate(prompts) -> answers` (the base model with tools disabled)."""
    from toolformer.runtime.prompts import zero_shot_prompt

    prompts = list(no_call_prompts() if prompts is None else prompts)
    answers = generate([zero_shot_prompt(p) for p in prompts])
    rows = []
    for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        answer = " ".join(str(answer).split())
        if answer and "[" not in answer:
            rows.append(_doc(f"chat:{i}", "plain", f"Question: {prompt}\nAnswer: {answer}", source="chat"))
    return rows


def chat_generator(model: str, max_new_tokens: int = 70, batch: int = 10) -> Any:
    """`generate(prompts) -> answers` for `chat_texts`: the instruct model answers each question through its chat
    template (greedy, repetition penalty 1.2), with no tools, cut at its last full sentence."""
    import torch

    from toolformer.models.load import load_model

    lm, tok = load_model(model)
    tok.padding_side = "left"

    def generate(prompts: Sequence[str]) -> list[str]:
        questions = [p.split("Question: ", 1)[-1].rsplit("\nAnswer:", 1)[0] for p in prompts]
        out: list[str] = []
        for i in range(0, len(questions), batch):
            chats = [
                tok.apply_chat_template(
                    [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
                )
                for q in questions[i : i + batch]
            ]
            enc = tok(chats, return_tensors="pt", padding=True)
            with torch.no_grad():
                ids = lm.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.2,
                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                )  # fmt: skip
            for row in ids[:, enc["input_ids"].shape[1] :]:
                text = tok.decode(row, skip_special_tokens=True).strip()
                cut = max(text.rfind("."), text.rfind("!"), text.rfind("?"))
                out.append(text[: cut + 1] if cut > 20 else text)
        return out

    return generate


def tool_translator(mt_model: str | None = None) -> Any:
    """`translate(text) -> str` through the MT tool (an `error: …` string when it cannot translate)."""
    from toolformer.calls import Call
    from toolformer.tools import load_tools

    tool = load_tools("MT", mt_model=mt_model).get("MT")
    return lambda text: tool.run(Call("MT", quote(text))).text


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as UTF-8 JSONL, atomically (a temp file renamed into place)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(Path(path), rows)


def count_kinds(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(r.get("meta", {}).get("kind", r.get("kind", "?"))) for r in rows))
