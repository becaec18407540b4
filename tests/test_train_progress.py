"""`TrainMeter`: per-step tokens and times, tokens/s past the warm-up, the last step saved and evaluated."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from toolformer.train.progress import StepTiming, TrainMeter


def state(step: int, tokens: int, max_steps: int = 10) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, max_steps=max_steps, num_input_tokens_seen=tokens)


def control() -> SimpleNamespace:
    return SimpleNamespace(should_save=False, should_evaluate=False)


def run_steps(meter: TrainMeter, tokens_per_step: list[int], max_steps: int) -> list[SimpleNamespace]:
    """Drive the callbacks through one step per entry; returns each step's control."""
    seen, controls = 0, []
    meter.on_train_begin(None, state(0, 0, max_steps), control())
    for step, n in enumerate(tokens_per_step, 1):
        meter.on_step_begin(None, state(step - 1, seen, max_steps), control())
        seen += n
        controls.append(meter.on_step_end(None, state(step, seen, max_steps), control()))
    return controls


def test_each_step_counts_the_tokens_it_read() -> None:
    meter = TrainMeter(progress=False)
    run_steps(meter, [100, 40, 60], max_steps=10)
    assert [(t.step, t.tokens) for t in meter.timings] == [(1, 100), (2, 40), (3, 60)]
    assert meter.tokens == 200 and meter.start_step == 0
    assert all(t.seconds >= 0 for t in meter.timings) and meter.seconds == sum(
        t.seconds for t in meter.timings
    )


def test_tokens_per_second_leaves_out_the_warm_up_steps() -> None:
    meter = TrainMeter(progress=False)
    meter.timings = [StepTiming(1, 10.0, 100), StepTiming(2, 1.0, 50), StepTiming(3, 1.0, 50)]
    assert meter.tokens_per_second() == pytest.approx(200 / 12)
    assert meter.tokens_per_second(skip_first=1) == pytest.approx(50.0)
    assert meter.tokens_per_second(skip_first=5) == pytest.approx(200 / 12)  # too few steps: all of them
    meter.timings = [StepTiming(1, 0.0, 10)]
    assert meter.tokens_per_second() is None


@pytest.mark.parametrize("evaluate_at_end", [True, False])
def test_only_the_last_step_is_made_to_save_and_evaluate(evaluate_at_end: bool) -> None:
    meter = TrainMeter(progress=False, evaluate_at_end=evaluate_at_end)
    controls = run_steps(meter, [5, 5, 5], max_steps=3)
    assert [(c.should_save, c.should_evaluate) for c in controls[:2]] == [(False, False)] * 2
    assert (controls[-1].should_save, controls[-1].should_evaluate) == (True, evaluate_at_end)


def test_loss_and_dev_perplexity_are_kept_from_the_logs() -> None:
    meter = TrainMeter(progress=False)
    s, c = state(1, 0), control()
    meter.on_log(None, s, c, logs={"learning_rate": 1e-4})
    assert meter.last_loss is None
    meter.on_log(None, s, c, logs={"loss": 2.5})
    meter.on_evaluate(None, s, c, metrics={"eval_loss": math.log(12.0)})
    assert meter.last_loss == 2.5 and meter.last_ppl == pytest.approx(12.0)
    meter.on_evaluate(None, s, c, metrics={"eval_loss": 1e6})  # exp overflows: infinite, not an error
    assert meter.last_ppl == math.inf


def test_the_bar_starts_with_training_and_stops_with_it() -> None:
    meter = TrainMeter(progress=True)
    run_steps(meter, [8, 8], max_steps=2)
    meter.on_log(None, state(2, 16, 2), control(), logs={"loss": 1.25})
    assert meter._bar is not None
    meter.on_train_end(None, state(2, 16, 2), control())
    assert meter._bar is None
    meter.close()  # closing twice is harmless
