"""The Apertium engine of MT: rule-based, offline, no torch; one `apertium` subprocess per call.

Debian's `apertium` with its pairs into English (`apt-get install apertium-eng-spa …`), run as a subprocess per
call (`apertium -u -f txt MODE`, never a shell) with a time limit; on timeout the whole pipeline's process group
is killed. py3langid picks the pair among the installed modes (`apertium -l`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from toolformer.errors import ConfigError, ToolError, ToolTimeoutError
from toolformer.tools.mt.langid import LANGID_TO_NLLB, _identifier
from toolformer.tools.mt.nllb import NLLB_INSTALL

APERTIUM_TIMEOUT_S = 30.0
# Below this py3langid probability the detected language is a guess (short phrases: "el gato negro" comes out
# Venetian or Italian), so the pair is chosen among the languages Apertium can translate into English.
UNSURE_BELOW = 0.5
# Debian's Apertium pairs into English: py3langid code → (language, package). A language listed here but not
# installed gets this package in its error message.
APERTIUM_PACKAGES: dict[str, tuple[str, str]] = {
    "es": ("Spanish", "apertium-eng-spa"),
    "ca": ("Catalan", "apertium-eng-cat"),
    "gl": ("Galician", "apertium-en-gl"),
    "eu": ("Basque", "apertium-eu-en"),
    "eo": ("Esperanto", "apertium-eo-en"),
    "hr": ("Croatian", "apertium-hbs-eng"),
    "sr": ("Serbian", "apertium-hbs-eng"),
    "bs": ("Bosnian", "apertium-hbs-eng"),
    "is": ("Icelandic", "apertium-isl-eng"),
    "mk": ("Macedonian", "apertium-mkd-eng"),
}
# Apertium names pairs by ISO 639-1 or 639-3 codes; where it uses a macrolanguage code rather than NLLB's
# individual language (hbs for Serbo-Croatian, ara for Arabic, …) the alias is listed here.
APERTIUM_ALIASES: dict[str, tuple[str, ...]] = {
    "hr": ("hbs",), "sr": ("hbs",), "bs": ("hbs",), "ar": ("ara",), "az": ("aze",), "fa": ("fas",),
    "lv": ("lav",), "mg": ("mlg",), "mn": ("mon",), "ms": ("msa", "zlm"), "ne": ("nep",), "no": ("nor", "nob"),
    "om": ("orm",), "ps": ("pus",), "sq": ("sqi",), "sw": ("swa",), "uz": ("uzb",),
}  # fmt: skip
_ENGLISH_CODES = ("eng", "en")
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_MARK = re.compile(r"(?<!\w)([*#@])(?=\w)")  # Apertium's unknown (*), generation (#) and transfer (@) marks


class Apertium:
    """Rule-based any-language → English through Apertium's installed pairs; one subprocess per call.

    `command` is the executable (default `apertium`, found on PATH) with any leading arguments; `timeout` is the
    limit in seconds of one subprocess, after which its whole process group (the mode's pipeline) is killed.
    """

    def __init__(
        self, command: str | Path | Sequence[str] = "apertium", *, timeout: float = APERTIUM_TIMEOUT_S
    ) -> None:
        self.command = (str(command),) if isinstance(command, (str, Path)) else tuple(map(str, command))
        if not self.command:
            raise ConfigError("command of Apertium must name an executable, got an empty sequence")
        if not timeout > 0:
            raise ConfigError(f"timeout of Apertium must be positive seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._modes: frozenset[str] | None = None

    def __repr__(self) -> str:
        return f"Apertium({' '.join(self.command)!r})"

    @property
    def loaded(self) -> bool:  # nothing stays loaded between calls; here for symmetry with Translator
        return False

    def installed(self) -> bool:
        """Whether the executable is on PATH (or is an existing file)."""
        return shutil.which(self.command[0]) is not None

    def modes(self) -> frozenset[str]:
        """The installed translation modes (`apertium -l`), e.g. {"spa-eng", "eng-spa"}; empty without Apertium."""
        if self._modes is None:
            if not self.installed():
                return frozenset()
            out = self._run(["-l"], "")
            self._modes = frozenset(line.strip() for line in out.splitlines() if line.strip())
        return self._modes

    def pair(self, lang: str) -> str | None:
        """The installed mode translating py3langid language `lang` (e.g. "es") into English, or None."""
        modes = self.modes()
        nllb = LANGID_TO_NLLB.get(lang, "")
        sources = dict.fromkeys((lang, nllb.split("_")[0], *APERTIUM_ALIASES.get(lang, ())))
        for source in sources:
            for target in _ENGLISH_CODES:
                if source and f"{source}-{target}" in modes:
                    return f"{source}-{target}"
        return None

    def choose(self, text: str) -> tuple[str, str | None]:
        """(language, mode) for `text`: py3langid's language and its installed pair (None when there is none).

        When py3langid is unsure (top probability below UNSURE_BELOW) of a language no pair covers, the most
        probable language among those Apertium can translate (installed or packaged) and English is taken.
        """
        lang, modes = self._choices(text)
        return lang, (modes[0] if modes else None)

    def _choices(self, text: str, most: int = 3) -> tuple[str, list[str]]:
        """(language, pairs to try) for `text`, from one py3langid ranking: `choose`'s language and its pair; when
        the detection is a guess, the installed pairs of the first `most` translatable languages in the ranking
        (the chosen language's first). No pair: []."""
        ranking = _identifier().rank(text)
        top, prob = ranking[0]
        if top == "en":
            return top, []
        mode = self.pair(top)
        if mode is not None or prob >= UNSURE_BELOW:
            return top, [] if mode is None else [mode]
        candidates = {lang for lang in LANGID_TO_NLLB if self.pair(lang)} | set(APERTIUM_PACKAGES) | {"en"}
        lang = next(code for code, _p in ranking if code in candidates)
        if lang == "en" or self.pair(lang) is None:
            return lang, []
        modes = [m for code, _p in ranking if code != "en" and (m := self.pair(code)) is not None]
        return lang, modes[:most]

    def translate(self, text: str) -> str:
        """Translate `text` into English; English input comes back unchanged (whitespace normalised)."""
        text = " ".join(str(text).split())
        if not text:
            raise ToolError("text is empty")
        lang, modes = self._choices(text)
        if lang == "en":
            return text
        if not modes:
            raise ToolError(missing_backend_message(lang, apertium_installed=self.installed()))
        outputs = [self._translate_with(m, text) for m in modes]
        # An unsure guess tries the first few translatable languages in py3langid's order and keeps the one that
        # leaves the fewest source words untranslated ("el perro come pan" ranks Galician above Spanish).
        return min(outputs, key=lambda out: _untranslated(text, out))

    def _translate_with(self, mode: str, text: str) -> str:
        source = text
        if mode.startswith("hbs-") and _CYRILLIC.search(text) and "Cyrl-Latn" in self.modes():
            text = self._run(["-u", "-f", "txt", "Cyrl-Latn"], text)  # the hbs pairs read Latin script only
        return strip_marks(self._run(["-u", "-f", "txt", mode], text), source)

    def _run(self, args: list[str], text: str) -> str:
        """Run `apertium ARGS` on `text` (stdin) and return its stdout; kill the process group at the limit."""
        exe = shutil.which(self.command[0])
        if exe is None:
            raise ToolError(f"apertium executable {self.command[0]!r} not found: apt-get install apertium")
        argv = [exe, *self.command[1:], *args]
        # A mode is a pipeline of processes (lt-proc | apertium-transfer | …) under one shell: a new session
        # makes them one process group, so a timeout kills all of them, not just the shell.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate((text + "\n").encode("utf-8"), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ToolTimeoutError(
                f"apertium {args[-1]} did not answer within {self.timeout:g} s and was killed"
            ) from None
        if proc.returncode != 0:
            detail = err.decode("utf-8", "replace").strip().splitlines()
            raise ToolError(
                f"apertium {' '.join(args)} failed (exit {proc.returncode})"
                + (f": {detail[0]}" if detail else "")
            )
        return out.decode("utf-8", "replace").strip()


def _untranslated(source: str, output: str) -> int:
    """Words of two letters or more in `source` that come out unchanged (an unknown word passes through `-u`)."""
    out = {w.lower() for w in re.findall(r"\w+", output)}
    return sum(1 for w in re.findall(r"[^\W\d_]{2,}", source) if w.lower() in out)


def strip_marks(output: str, source: str) -> str:
    """`output` without Apertium's `*`/`#`/`@` word marks; a mark character the source itself holds is kept."""
    keep = {c for c in "*#@" if c in source}  # "#oferta" in the input comes out as "#offer": not a mark
    return _MARK.sub(lambda m: m.group(1) if m.group(1) in keep else "", output)


def missing_backend_message(lang: str, *, apertium_installed: bool = True) -> str:
    """One line saying what to install so that MT can translate py3langid language `lang` into English."""
    nllb = LANGID_TO_NLLB.get(lang, "")
    if lang in APERTIUM_PACKAGES:
        name, package = APERTIUM_PACKAGES[lang]
        return (
            f"MT cannot translate {name} ({lang}) here: install its Apertium pair "
            f"(`sudo apt-get install {package}`) or the NLLB model (`{NLLB_INSTALL}`)"
        )
    what = f"language {lang!r}" + (f" ({nllb})" if nllb else "")
    why = "" if apertium_installed else "Apertium is not installed and "
    return (
        f"MT cannot translate {what} here: {why}Debian's Apertium has no {lang}→English pair; "
        f"install the NLLB model (`{NLLB_INSTALL}`)"
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - no process groups
            proc.kill()
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=5)  # reap it and drain the pipes
    except subprocess.TimeoutExpired:  # a grandchild that left the group still holds a pipe: let it go
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
