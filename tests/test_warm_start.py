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
