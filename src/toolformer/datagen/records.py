"""The records that flow through data generation: a document, a candidate call and its verdict, and the rows of
annotate's output files (`TrainingRow` in `shard-*.jsonl`, `DocumentRecord` in `records-*.jsonl`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from toolformer.calls import Call, format_call


@dataclass
class Document:
    """One input text. `id` is the source id (from the data or `<file>:<line>`)."""

    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Candidate:
    """A proposed call c = (tool, args) at character `position` of a document's text, and what became of it.

    `position` is the character offset i where e(c, r) would be inserted (the call precedes x_i). `token_index` is
    the index of x_i in the tokenised text, set by the filter. Losses follow the paper: `loss_plus` = L⁺ =
    L_i(e(c, r)); `loss_empty` = L_i(ε); `loss_noresult` = L_i(e(c, ε)); `loss_minus` = L⁻ = min of the two.
    """

    doc_id: str
    tool: str
    args: str
    position: int
    source: str  # "lm" (sampled from P(x)), "rule", "data" (already in the data set) or "user" (--proposer mod:fn)
    p_start: float | None = None  # p_i = p("[" | P(x), x_<i) for LM-sampled candidates
    result: str | None = None
    ok: bool | None = None  # the tool ran without error
    token_index: int | None = None
    loss_plus: float | None = None
    loss_empty: float | None = None
    loss_noresult: float | None = None
    loss_minus: float | None = None
    kept: bool | None = None
    reason: str = ""  # why kept or dropped: "kept", "tool error", "below tau_f", "duplicate position", ...

    @property
    def call(self) -> Call:
        return Call(self.tool, self.args, self.result)

    @property
    def gain(self) -> float | None:
        """L⁻ − L⁺: how much the call with its result helps predict the next tokens."""
        if self.loss_minus is None or self.loss_plus is None:
            return None
        return self.loss_minus - self.loss_plus

    def text(self, with_result: bool = True) -> str:
        """e(c, r) (or e(c) without the result) in the inline syntax."""
        return format_call(self.tool, self.args, self.result if with_result else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k in cls.__dataclass_fields__}


@dataclass
class KeptCall:
    """A call kept in a training text: at character `position` of the source text, at `start`:`end` of the text."""

    tool: str
    args: str
    result: str | None
    position: int
    start: int
    end: int
    gain: float | None = None
    loss_plus: float | None = None
    loss_minus: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeptCall:
        return cls(**_known(cls, data))


@dataclass
class TrainingRow:
    """One row of a `shard-*.jsonl` file: a document that kept a call, its text with the calls inserted."""

    id: str
    split: str
    text: str
    source_text: str
    calls: list[KeptCall] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingRow:
        row = _known(cls, data)
        row["calls"] = [KeptCall.from_dict(c) for c in data.get("calls") or []]
        return cls(**row)


@dataclass
class DocumentRecord:
    """One row of a `records-*.jsonl` file: what became of one input document (every input row has one).

    `status` is "ok" or "bad" (an input row that could not be read; `verdict` says why). `text` is the document's
    text when it kept no call (a document that kept one has it in its shard row's `source_text`); records written
    before it was added lack it.
    """

    id: str
    split: str
    status: str
    verdict: str = ""
    kept_calls: int = 0
    chars: int | None = None
    tools_applied: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    text: str | None = None

    @property
    def gain(self) -> float | None:
        """The largest gain L⁻ − L⁺ among the document's candidates (None when none was scored)."""
        gains = [c.gain for c in self.candidates if c.gain is not None]
        return max(gains) if gains else None

    def to_dict(self) -> dict[str, Any]:
        """The record as the file holds it (candidates with their call text and gain)."""
        out = asdict(self)
        out["candidates"] = [
            {
                **{k: v for k, v in asdict(c).items() if k != "doc_id"},
                "call": c.text(c.result is not None),
                "gain": c.gain,
            }
            for c in self.candidates
        ]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DocumentRecord:
        record = _known(cls, data)
        doc_id = str(data["id"])
        record["id"] = doc_id
        record["candidates"] = [
            Candidate.from_dict({**c, "doc_id": doc_id}) for c in data.get("candidates") or []
        ]
        return cls(**record)
