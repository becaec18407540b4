"""tests/shared_data.py: the shared data folder is found beside the checkout or by env var; missing data skips a
test locally and fails it in CI."""

from __future__ import annotations

from pathlib import Path

import pytest

import shared_data as sd


def test_the_folder_is_beside_the_checkout_unless_the_env_var_names_one(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(sd.DATA_ENV, raising=False)
    assert sd.data_root() == Path(__file__).resolve().parents[2] / "shared" / "data"
    monkeypatch.setenv(sd.DATA_ENV, str(tmp_path))
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "x.jsonl").write_text("{}\n", encoding="utf-8")
    assert sd.shared_data("gsm8k/x.jsonl") == tmp_path / "gsm8k" / "x.jsonl"


@pytest.mark.parametrize(
    ("ci", "outcome", "says"),
    [
        ("", pytest.skip.Exception, "real data not available: .*nope.jsonl"),
        ("0", pytest.skip.Exception, "real data not available"),
        ("false", pytest.skip.Exception, "real data not available"),
        ("true", pytest.fail.Exception, "CI must run the tests on real data"),
        ("1", pytest.fail.Exception, "CI must run the tests on real data"),
    ],
)
def test_missing_data_skips_locally_and_fails_in_ci(monkeypatch, tmp_path: Path, ci, outcome, says) -> None:
    monkeypatch.setenv(sd.DATA_ENV, str(tmp_path))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match=says):
        sd.shared_data("nope.jsonl")
