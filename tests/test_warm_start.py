"""The demo's supervised warm start stops at its sampled-accuracy target, and not before."""

from __future__ import annotations

import pytest

import lightning_grpo.demo.warm_start as warm_start
from lightning_grpo.demo.arithmetic import Arithmetic
from lightning_grpo.demo.tiny_model import TinyModelShape, build_char_tokenizer, build_tiny_qwen3


@pytest.mark.parametrize(("measured", "expected_steps"), [(0.5, 10), (0.3, 30)])
def test_warm_start_stops_once_sampled_accuracy_reaches_the_target(monkeypatch, measured, expected_steps) -> None:
    checks = []

    def fake_accuracy(model, tokenizer, *probe, sample, seed):  # type: ignore[no-untyped-def]
        checks.append(sample)
        return measured

    monkeypatch.setattr(warm_start, "_accuracy", fake_accuracy)
    ws = warm_start.WarmStart(steps=30, batch_size=4, model=TinyModelShape(hidden_size=32, num_layers=1, intermediate_size=64),
                              target_accuracy=0.4, eval_every=10, eval_prompts=4)
    tokenizer = build_char_tokenizer()
    model = build_tiny_qwen3(tokenizer, hidden_size=32, num_layers=1, intermediate_size=64)
    ws.train(model, tokenizer, Arithmetic(num_train=50, num_validation=8))
    assert ws.steps_done == expected_steps  # 0.5 >= 0.4 at the first check; 0.3 never: the cap
    assert ws.accuracy == {"sampled": measured, "greedy": measured}
    assert checks.count(True) == expected_steps // 10 and checks[-1] is False  # then one greedy check


def test_target_accuracy_out_of_range_is_named() -> None:
    with pytest.raises(ValueError, match=r"target_accuracy must be in \(0, 1\] or None, got 1.5"):
        warm_start.WarmStart(target_accuracy=1.5)


SMALL = TinyModelShape(hidden_size=32, num_layers=1, intermediate_size=64)


@pytest.fixture
def trainings(monkeypatch):  # type: ignore[no-untyped-def]
    """WarmStart.train without training: records each call's steps."""
    calls: list[int] = []

    def fake_train(self, model, tokenizer, source, log_dir=None):  # type: ignore[no-untyped-def]
        calls.append(self.steps)
        self.steps_done = self.steps
        return 0.5

    monkeypatch.setattr(warm_start.WarmStart, "train", fake_train)
    return calls


def test_the_warm_start_is_reused_only_with_the_same_settings(tmp_path, trainings, caplog) -> None:  # type: ignore[no-untyped-def]
    import json
    import logging

    out = tmp_path / "warm_start"
    source = Arithmetic(num_train=20, num_validation=4)
    caplog.set_level(logging.INFO)

    warm_start.WarmStart(output_dir=str(out), steps=2, model=SMALL).prepare(str(out), source)
    record = json.loads((out / "warm_start.json").read_text())
    assert trainings == [2] and record["settings"]["steps"] == 2 and record["steps_done"] == 2
    assert record["settings"]["source"]["class_path"] == "lightning_grpo.demo.arithmetic.Arithmetic"

    caplog.clear()
    warm_start.WarmStart(output_dir=str(out), steps=2, model=SMALL).prepare(str(out), source)
    assert trainings == [2]  # same settings: reused
    assert f"reusing the demo model at {out}" in caplog.text and "steps 2" in caplog.text

    caplog.clear()
    warm_start.WarmStart(output_dir=str(out), steps=3, target_accuracy=0.5, model=SMALL).prepare(str(out), source)
    assert trainings == [2, 3]  # other settings: built again, in the same folder
    assert "steps 2 -> 3" in caplog.text and "target_accuracy None -> 0.5" in caplog.text
    assert json.loads((out / "warm_start.json").read_text())["settings"]["steps"] == 3
    assert not out.with_name("warm_start.old").exists() and not out.with_name("warm_start.tmp").exists()

    warm_start.WarmStart(output_dir=str(out), steps=3, target_accuracy=0.5, model=SMALL).prepare(
        str(out), Arithmetic(num_train=20, num_validation=4, max_operand=9))
    assert trainings == [2, 3, 3]  # another task: built again


def test_a_model_without_a_record_is_reused_with_a_warning(tmp_path, trainings) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "warm_start"
    source = Arithmetic(num_train=20, num_validation=4)
    warm_start.WarmStart(output_dir=str(out), steps=2, model=SMALL).prepare(str(out), source)
    (out / "warm_start.json").unlink()
    with pytest.warns(UserWarning, match=r"no warm_start.json saying how it was built"):
        warm_start.WarmStart(output_dir=str(out), steps=5, model=SMALL).prepare(str(out), source)
    assert trainings == [2]
    (out / "warm_start.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"warm_start.json is not valid JSON"):
        warm_start.WarmStart(output_dir=str(out), steps=5, model=SMALL).prepare(str(out), source)
