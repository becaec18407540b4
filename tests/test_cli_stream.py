"""`ask`/`chat` stream their answer on a terminal (calls shown as they run); long commands log progress lines."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import toolformer.cli as cli
from toolformer.cli import chat as ask_and_chat
from toolformer.runtime.decode import CallTrace, Event, Generation
from toolformer.runtime.engine import ChatResult, Toolformer

runner = CliRunner()

ANSWER = " 23 * 47 is [Calculator(23 * 47) → 1081] 1081."
CHUNKS = [" 23 * 47 is", " [Calculator(23 * 47) →", " 1081] 1081.", "\n"]  # then "\nQuestion:" is cut


class FakeToolformer:
    """Stands in for a loaded model: emits `CHUNKS` as decoding events and notes what stdout held after each."""

    name = "fake"
    backend = "transformers"

    def __init__(self, stdout: Any) -> None:
        self.stdout = stdout  # a callable returning what the user has seen so far
        self.seen: list[str] = []
        self.streamed: bool | None = None
        self.tools = SimpleNamespace(names=lambda: ["Calculator"])

    def ask(self, question: str, config: Any = None, on_event: Any = None) -> Generation:
        self.streamed = on_event is not None
        for chunk in CHUNKS:
            if on_event is not None:
                on_event(Event("text", 0, chunk))
            self.seen.append(self.stdout())
        trace = CallTrace("Calculator", "23 * 47", "1081", True, 0.001, 12, 39)
        if on_event is not None:
            on_event(Event("call", 0, trace=trace))
            on_event(Event("done", 0, finish_reason="stop"))
        return Generation("prompt", ANSWER, [trace], "stop", 12, 2, 5, 0.1)

    def chat(self, messages: list, config: Any = None, client_tools: Any = None, on_event: Any = None) -> Any:
        self.streamed = on_event is not None
        call = '<tool_call>{"name": "Calculator", "arguments": {"expression": "2*3"}}</tool_call>'
        trace = CallTrace("Calculator", "2*3", "6", True, 0.001, -1, -1)
        for chunk in (call[:20], call[20:]):
            if on_event is not None:
                on_event(Event("text", 0, chunk))
            self.seen.append(self.stdout())
        if on_event is not None:
            on_event(Event("done", 0, finish_reason="stop"))
            on_event(Event("call", 0, trace=trace))
        self.seen.append(self.stdout())
        for chunk in ("It is ", "6."):
            if on_event is not None:
                on_event(Event("text", 0, chunk))
            self.seen.append(self.stdout())
        if on_event is not None:
            on_event(Event("done", 0, finish_reason="stop"))
        convo = [
            *messages,
            {"role": "assistant", "content": "", "tool_calls": []},
            {"role": "tool", "content": "6"},
            {"role": "assistant", "content": "It is 6."},
        ]
        return ChatResult("It is 6.", [trace], [], convo)


@pytest.fixture
def terminal(monkeypatch) -> io.StringIO:
    """stdout is a terminal: the console `ask` and `chat` print on writes to a buffer that says it is one."""
    buffer = io.StringIO()
    monkeypatch.setattr(
        ask_and_chat, "console", Console(file=buffer, force_terminal=True, color_system=None, width=60)
    )
    return buffer


def _fake(monkeypatch, stdout: Any) -> FakeToolformer:
    fake = FakeToolformer(stdout)
    monkeypatch.setattr(Toolformer, "load", classmethod(lambda cls, *a, **k: fake))
    return fake


def test_ask_streams_on_a_terminal_and_shows_the_call_while_it_runs(monkeypatch, terminal) -> None:
    fake = _fake(monkeypatch, terminal.getvalue)
    result = runner.invoke(cli.app, ["ask", "What is 23 times 47?"])
    assert result.exit_code == 0, result.output
    assert fake.streamed
    assert fake.seen[0] == "23 * 47 is"  # on screen before the model wrote the rest
    assert fake.seen[1] == "23 * 47 is [Calculator(23 * 47) →"  # the call, while its tool runs
    assert fake.seen[3] == ANSWER.strip()  # a trailing newline that may start a stop string waits
    out = terminal.getvalue()
    assert out.startswith(ANSWER.strip() + "\n") and out.count(ANSWER.strip()) == 1
    assert "Tool calls" in out  # the trace table still follows


def test_ask_does_not_stream_into_a_pipe_unless_asked(monkeypatch) -> None:
    fake = _fake(monkeypatch, lambda: "")
    piped = runner.invoke(cli.app, ["ask", "q"])
    assert piped.exit_code == 0 and fake.streamed is False
    assert piped.stdout.startswith(ANSWER.strip())
    forced = runner.invoke(cli.app, ["ask", "q", "--stream"])
    assert forced.exit_code == 0 and fake.streamed is True
    assert forced.stdout.startswith(ANSWER.strip() + "\n") and forced.stdout.count("1081] 1081.") == 1


def test_ask_json_is_unchanged_on_a_terminal(monkeypatch, terminal) -> None:
    fake = _fake(monkeypatch, terminal.getvalue)
    result = runner.invoke(cli.app, ["ask", "q", "--json"])
    assert result.exit_code == 0 and fake.streamed is False
    data = json.loads(result.stdout)
    assert data["text"] == ANSWER and data["calls"][0]["output"] == "1081" and terminal.getvalue() == ""


def test_chat_streams_the_reply_and_shows_json_calls_as_they_return(monkeypatch, terminal) -> None:
    fake = _fake(monkeypatch, terminal.getvalue)
    result = runner.invoke(cli.app, ["chat"], input="what is 2*3\n")
    assert result.exit_code == 0, result.output
    assert fake.streamed
    assert fake.seen[0] == fake.seen[1] == "model> "  # the JSON call is never shown as text
    assert fake.seen[2] == "model> \n[Calculator(2*3) → 6]\n"  # shown when the tool returned
    assert fake.seen[3].endswith("It is") and fake.seen[4].endswith("It is 6.")
    assert terminal.getvalue().startswith("model> \n[Calculator(2*3) → 6]\nIt is 6.\n")


def test_chat_without_a_terminal_prints_the_reply_once(monkeypatch) -> None:
    fake = _fake(monkeypatch, lambda: "")
    result = runner.invoke(cli.app, ["chat"], input="what is 2*3\n")
    assert result.exit_code == 0 and fake.streamed is False
    assert "model> It is 6." in result.stdout


def test_a_real_streamed_answer_is_the_answer(tiny_dir) -> None:
    model = ["--model", str(tiny_dir), "--max-new-tokens", "12"]
    args = ["ask", "What is 2 + 2?", *model, "--tools", "Calculator"]
    as_json = runner.invoke(cli.app, [*args, "--json"])
    streamed = runner.invoke(cli.app, [*args, "--stream"])
    assert as_json.exit_code == 0 and streamed.exit_code == 0, streamed.output
    text = json.loads(as_json.stdout)["text"].strip()
    assert streamed.stdout.startswith(text + "\n")


# --------------------------------------------------------------------------------------------- progress lines


def test_eval_writes_progress_lines_to_a_log(monkeypatch, tmp_path) -> None:
    import importlib

    # `toolformer.evals` exports a function named `evaluate`: fetch the modules themselves.
    evaluate_module = importlib.import_module("toolformer.evals.evaluate")
    report_module = importlib.import_module("toolformer.evals.report")

    def fake_evaluate(config: Any, progress: Any = None, datasets: Any = None) -> Any:
        for _ in range(10):
            progress("gsm8k tools", 1)
        return SimpleNamespace(notices=lambda: [])

    monkeypatch.setattr(evaluate_module, "load_datasets", lambda config: [])
    monkeypatch.setattr(evaluate_module, "total_steps", lambda config, loaded: 10)
    monkeypatch.setattr(evaluate_module, "evaluate", fake_evaluate)
    monkeypatch.setattr(report_module, "write_outputs", lambda results, out: {})
    monkeypatch.setattr(report_module, "rich_tables", lambda results: [])
    result = runner.invoke(cli.app, ["eval", "some-model", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("eval: ")]
    assert lines[0].startswith("eval: loading model 0/10")
    assert any(line.startswith("eval: gsm8k tools") for line in lines)
    assert lines[-1].startswith("eval: gsm8k tools 10/10 (100%)") and lines[-1].endswith("done")
    quiet = runner.invoke(cli.app, ["eval", "some-model", "--out", str(tmp_path / "out"), "--quiet"])
    assert quiet.exit_code == 0 and "eval: " not in quiet.stderr


def test_train_meter_writes_progress_lines_when_stderr_is_not_a_terminal(capsys) -> None:
    from toolformer.train.progress import TrainMeter

    meter = TrainMeter(progress=True)
    state = SimpleNamespace(global_step=0, max_steps=4, num_input_tokens_seen=0)
    control = SimpleNamespace(should_save=False, should_evaluate=False)
    meter.on_train_begin(None, state, control)
    for step in range(1, 5):
        meter.on_step_begin(None, state, control)
        state.global_step, state.num_input_tokens_seen = step, step * 100
        meter.on_step_end(None, state, control)
        meter.on_log(None, state, control, logs={"loss": 2.0 / step})
    meter.on_train_end(None, state, control)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train")]
    assert lines[0].startswith("train 0/4 (0%)")
    assert lines[-1].startswith("train 4/4 (100%)") and "done" in lines[-1] and "loss 0.500" in lines[-1]
