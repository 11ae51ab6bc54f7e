"""``build_rollout``: samples → texts → rewards → Rollout, the one path of training and validation."""

from __future__ import annotations

import torch

from tests.builders import make_data
from lightning_grpo.demo.tiny_model import build_char_tokenizer
from lightning_grpo.rewards.base import RewardBatch, RewardComposer, RewardFunction
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rollout import build_rollout
from lightning_grpo.sampling import Samples, completion_mask_from_ids


class Recorder(RewardFunction):
    """Scores the completion's group index (so a wrong grouping changes the rewards) and records the batch."""

    def __init__(self) -> None:
        super().__init__(name="recorder", weight=0.5)
        self.batches: list[RewardBatch] = []

    def score(self, batch: RewardBatch) -> list[float]:
        self.batches.append(batch)
        return [float(g) for g in batch.group_ids]


class Flaky(RewardFunction):
    def __init__(self) -> None:
        super().__init__(name="flaky")

    def score_one(self, prompt, completion, gold, metadata) -> float:  # type: ignore[no-untyped-def]
        if completion == "13":
            raise RuntimeError("boom")
        return 1.0


def _samples(tokenizer, completions: list[list[int]], prompts: list[str], g: int) -> Samples:
    encoded = tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    width = max(len(c) for c in completions)
    ids = torch.full((len(completions), width), tokenizer.pad_token_id)
    for i, c in enumerate(completions):
        ids[i, : len(c)] = torch.tensor(c)
    mask, truncated = completion_mask_from_ids(ids, [tokenizer.eos_token_id])
    sequences = torch.cat([encoded["input_ids"].repeat_interleave(g, 0), ids], dim=1)
    return Samples(sequences, mask, truncated, encoded["attention_mask"].repeat_interleave(g, 0), g, generation_s=0.25)


def test_groups_texts_rewards_metadata_and_counters() -> None:
    tokenizer = build_char_tokenizer()
    eos = tokenizer.eos_token_id
    enc = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    g = 3
    completions = [enc("12") + [eos], enc("13") + [eos], enc("777"), enc("99") + [eos], enc("9") + [eos], enc("x") + [eos]]
    completions[5] = [len(tokenizer) + 5] + completions[5]  # an id beyond the tokenizer (padded embedding)
    batch = {
        "prompt": ["5+7=", "90+9="],
        "answer": ["12", "99"],
        "id": ["a", "b"],
        "metadata": [{"level": 1}, {"level": 5}],
    }
    recorder = Recorder()
    composer = RewardComposer([ExactInteger(name="correct"), recorder, Flaky()], on_error="zero")
    samples = _samples(tokenizer, completions, batch["prompt"], g)
    rollout = build_rollout(samples, batch, tokenizer, composer, temperature=0.7, max_new_tokens=4)

    assert rollout.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    seen = recorder.batches[0]
    assert seen.group_ids == [0, 0, 0, 1, 1, 1]
    assert seen.golds == ["12"] * 3 + ["99"] * 3 and seen.prompts == ["5+7="] * 3 + ["90+9="] * 3
    assert seen.completion_ids == ["a/0", "a/1", "a/2", "b/0", "b/1", "b/2"]
    assert seen.metadata == [{"level": 1}] * 3 + [{"level": 5}] * 3
    assert seen.lengths == [3, 3, 3, 3, 2, 3] and seen.truncated == [False, False, True, False, False, False]
    assert rollout.completions == ["12", "13", "777", "99", "9", "x"]  # EOS and the unknown id left out
    assert rollout.correct.tolist() == [True, False, False, True, False, False]
    # total = correct + 0.5 * group index + flaky (0 where it raised)
    assert rollout.rewards.tolist() == [2.0, 0.0, 1.0, 2.5, 1.5, 1.5]
    assert rollout.reward_components["recorder"].tolist() == [0, 0, 0, 1, 1, 1]
    assert rollout.undecodable.tolist() == [False] * 5 + [True]
    assert abs(rollout.stats["completions/undecodable_frac"] - 1 / 6) < 1e-7
    assert rollout.stats["reward/flaky_errors"] == 1.0 and rollout.stats["time/generation_s"] == 0.25
    assert rollout.prompt_ids == ["a", "b"] and rollout.temperature == 0.7 and rollout.prompt_length == 5

    # Errors are logged per call: a second batch with the same failure counts 1 again, 2 in total.
    again = build_rollout(samples, batch, tokenizer, composer, temperature=0.7, max_new_tokens=4)
    assert again.stats["reward/flaky_errors"] == 1.0 and again.stats["reward/flaky_errors_total"] == 2.0


def test_data_module_setup_starts_every_reward_function(tiny_model_dir) -> None:
    """Reward set-up (MathReward's worker pool) happens in setup, not inside the first rollout."""
    class Counting(ExactInteger):
        started = 0

        def setup(self) -> None:
            Counting.started += 1

    data = make_data(tokenizer=str(tiny_model_dir), rewards=[Counting(name="correct")])
    data.setup("fit")
    assert Counting.started == 1
