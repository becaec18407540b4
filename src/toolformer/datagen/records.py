"""The records that flow through data generation: a document, a candidate call at a position, and its verdict."""

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
    source: str  # "lm" (sampled from P(x)), "rule", or "data" (already in the data set)
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
