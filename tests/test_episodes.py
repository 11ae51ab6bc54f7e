"""Episodes: single-turn rollouts unchanged by the engine, multi-turn transcripts token in / token out.

The single-turn regression compares with ``tests/data/single_turn_regression.pt``, recorded on a fixed seed
with the code before the rollout engine existed (the data module sampled and scored itself): 3 GRPO steps
of the tiny model, with and without dynamic sampling; every rollout tensor and every logged loss and
gradient norm must be equal bit for bit (CPU, one thread).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from lightning_grpo.dynamic_sampling import DynamicSampling
from lightning_grpo.environments import Environment, EnvReply, Problem
from lightning_grpo.logprobs import completion_logprobs
from lightning_grpo.models import load_causal_lm, load_tokenizer
from lightning_grpo.objectives import GRPO
from lightning_grpo.objectives.base import Normalizers, ObjectiveInputs
from lightning_grpo.rewards import RewardComposer, RewardFunction
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.rollout_engine import RolloutEngine
from lightning_grpo.sampling import FastSampler, Sampling
from lightning_grpo.demo.arithmetic import Arithmetic
from tests.builders import make_data, make_module
from tests.test_resume_and_validation import DigitShare

REGRESSION = Path(__file__).parent / "data" / "single_turn_regression.pt"


class Record(Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        m = trainer.callback_metrics
        self.rows.append({
            "input_ids": batch.input_ids.clone(), "attention_mask": batch.attention_mask.clone(),
            "completion_mask": batch.completion_mask.clone(), "rewards": batch.rewards.clone(),
            "loss": float(m.get("train/loss", float("nan"))), "grad_norm": float(m["train/grad_norm"]),
            "entropy": float(m["train/entropy"]),
        })


def _regression_run(model_dir: Path, dynamic: bool) -> list[dict[str, Any]]:
    seed_everything(0)
    record = Record()
    trainer = Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False, callbacks=[record], num_sanity_val_steps=0, limit_val_batches=0)
    module = make_module(str(model_dir), objective=GRPO(beta=0.04), learning_rate=1e-3)
    data = make_data(Arithmetic(), tokenizer=str(model_dir), prompts_per_step=4, seed=3, group_size=4, max_new_tokens=8,
                     rewards=[DigitShare()] if dynamic else [ExactInteger(), DigitShare()],
                     dynamic_sampling=DynamicSampling(2) if dynamic else None)
    trainer.fit(module, data)
    return record.rows


@pytest.mark.slow
@pytest.mark.parametrize("case", ["plain", "dynamic"])
def test_single_turn_rollouts_and_losses_are_bit_identical_to_before_the_engine(tiny_model_dir: Path, case: str) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the recording's thread count: float sums in the same order
    try:
        rows = _regression_run(tiny_model_dir, dynamic=case == "dynamic")
    finally:
        torch.set_num_threads(threads)
    expected = torch.load(REGRESSION)[case]
    assert len(rows) == len(expected) == 3
    for step, (got, want) in enumerate(zip(rows, expected)):
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(got[key], value), (step, key)
            else:
                assert got[key] == value or (got[key] != got[key] and value != value), (step, key, got[key], value)


# ---- multi-turn --------------------------------------------------------------------------------------


class Scripted(Environment):
    """Replies ``<k>`` after turn k and cuts each model turn to its first 3 characters; a problem whose
    question has L characters ends after turn L - 2 (so episodes of one batch run different numbers of turns)."""

    max_turns = 4

    def step(self, states: list[Problem], turns: list[str], turn_number: int) -> list[EnvReply]:
        return [
            EnvReply(done=turn_number >= len(s.question) - 2, message=f"<{turn_number}>", cut_at=min(len(t), 3), tool_calls=1)
            for s, t in zip(states, turns)
        ]


class RecordingSampler(FastSampler):
    """The fast sampler, keeping every call's completion ids (what the model sampled)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[torch.Tensor] = []

    def sample(self, policy, prompt_ids, prompt_mask, params, eos_ids, pad_id):  # type: ignore[no-untyped-def]
        samples = super().sample(policy, prompt_ids, prompt_mask, params, eos_ids, pad_id)
        self.calls.append(samples.completion_ids.clone())
        return samples


def _batch(tokenizer: Any, questions: list[str]) -> dict[str, Any]:
    encoded = tokenizer(questions, padding=True, return_tensors="pt", add_special_tokens=False)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "prompt": questions,
            "answer": ["0"] * len(questions), "id": [f"q{i}" for i in range(len(questions))],
            "metadata": [{"question": q} for q in questions]}


@pytest.fixture(scope="module")
def policy_and_tokenizer(tiny_model_dir: Path) -> tuple[Any, Any]:
    return load_causal_lm(str(tiny_model_dir), "float32", role="policy"), load_tokenizer(str(tiny_model_dir))


def _engine(tokenizer: Any, environment: Environment, sampler: Any = None, budget: int = 40, **kwargs: Any) -> RolloutEngine:
    engine = RolloutEngine(group_size=2, sampling=Sampling(max_new_tokens=6), environment=environment,
                           sampler=sampler, rewards=[DigitShare()], max_episode_tokens=budget, **kwargs)
    engine.attach(tokenizer, seed=0)
    return engine


def test_multi_turn_transcripts_keep_the_sampled_ids_and_mask_out_environment_tokens(policy_and_tokenizer) -> None:
    policy, tokenizer = policy_and_tokenizer
    sampler = RecordingSampler()
    engine = _engine(tokenizer, Scripted(), sampler)
    rollout = engine.collect(policy, _batch(tokenizer, ["1+2=", "33+4="]), iter(()))
    tp = rollout.prompt_length
    turns_of = [2, 2, 3, 3]  # question lengths 4, 4, 5, 5 (G = 2) -> end after turn 2, 2, 3, 3
    assert len(sampler.calls) == 3  # turn 1 for all four, turn 2 for all four, turn 3 for the last two
    active = {1: [0, 1, 2, 3], 2: [0, 1, 2, 3], 3: [2, 3]}
    for i in range(4):
        ids = rollout.input_ids[i, tp:]
        loss, context = rollout.completion_mask[i], rollout.attention_mask[i, tp:]
        position = 0
        for turn in range(1, turns_of[i] + 1):
            sampled = sampler.calls[turn - 1][active[turn].index(i)]
            # the model's turn: exactly its sampled ids (cut to 3 tokens: the char tokenizer's 3 characters)
            assert torch.equal(ids[position : position + 3], sampled[:3]), (i, turn)
            assert loss[position : position + 3].tolist() == [1, 1, 1]
            position += 3
            if turn < turns_of[i]:
                message = tokenizer(f"<{turn}>", add_special_tokens=False)["input_ids"]
                assert ids[position : position + len(message)].tolist() == message
                assert loss[position : position + len(message)].sum() == 0  # never in the loss
                position += len(message)
        assert context[:position].tolist() == [1] * position and context[position:].sum() == 0
        assert loss[position:].sum() == 0
        assert not rollout.truncated[i]  # every turn ended where the environment said (cut_at)
    assert rollout.stats["episode/turns"] == 10 and rollout.stats["episode/multi_turn"] == 4
    assert rollout.lengths.tolist() == [6, 6, 9, 9]  # the model's tokens only
    assert "<1>" in rollout.completions[0]  # the reward functions read the whole transcript


def test_environment_tokens_get_no_gradient(policy_and_tokenizer) -> None:
    """Perturbing an environment token's log-prob changes nothing: its gradient is exactly zero."""
    policy, tokenizer = policy_and_tokenizer
    engine = _engine(tokenizer, Scripted())
    rollout = engine.collect(policy, _batch(tokenizer, ["1+2=", "33+4="]), iter(()))
    logp, entropy = completion_logprobs(policy, rollout.input_ids, rollout.attention_mask, rollout.prompt_length,
                                        temperature=1.0, group_size=rollout.group_size)
    logp = logp.detach().requires_grad_(True)
    mask = rollout.completion_mask.float()
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5])
    loss, _ = GRPO(beta=0.0)(ObjectiveInputs(
        logp=logp, old_logp=logp.detach(), advantages=advantages, mask=mask,
        normalizers=Normalizers(num_sequences=4.0, num_tokens=float(mask.sum()), max_length=40.0),
        entropy=entropy.detach(), completion_ids=rollout.completion_ids, group_ids=rollout.group_ids))
    (grad,) = torch.autograd.grad(loss, logp)
    environment = (rollout.attention_mask[:, rollout.prompt_length :] == 1) & (rollout.completion_mask == 0)
    assert environment.sum() >= 8  # there are environment tokens
    assert grad[environment].abs().max() == 0
    assert (grad[rollout.completion_mask.bool()] != 0).all()  # and every model token does get one


class Endless(Environment):
    """Never done: episodes end at the turn limit or the token budget."""

    def __init__(self, max_turns: int) -> None:
        self.max_turns = max_turns

    def step(self, states: list[Any], turns: list[str], turn_number: int) -> list[EnvReply]:
        return [EnvReply(done=False, message="ok", tool_calls=1) for _ in turns]


def test_turn_limit_and_token_budget_truncate_episodes(policy_and_tokenizer) -> None:
    policy, tokenizer = policy_and_tokenizer
    rollout = _engine(tokenizer, Endless(max_turns=2)).collect(policy, _batch(tokenizer, ["1+2="]), iter(()))
    assert rollout.stats["episode/turns"] == 4 and rollout.truncated.all()  # 2 turns each, cut off at the limit
    rollout = _engine(tokenizer, Endless(max_turns=10), budget=12).collect(policy, _batch(tokenizer, ["1+2="]), iter(()))
    context = rollout.attention_mask[:, rollout.prompt_length :].sum(dim=1)
    assert (context <= 12).all() and rollout.truncated.all()
    assert rollout.stats["episode/turns"] < 20  # the budget, not the turn limit, ended them


def test_a_resumed_engine_draws_the_same_episodes(policy_and_tokenizer) -> None:
    policy, tokenizer = policy_and_tokenizer
    first = _engine(tokenizer, Scripted())
    batch = _batch(tokenizer, ["1+2=", "33+4="])
    first.collect(policy, batch, iter(()))
    want = first.collect(policy, batch, iter(()))
    resumed = _engine(tokenizer, Scripted())
    resumed.load_state_dict(first.state_dict() | {"rollouts_sampled": 1})
    got = resumed.collect(policy, batch, iter(()))
    assert torch.equal(got.input_ids, want.input_ids) and torch.equal(got.completion_mask, want.completion_mask)


class RewardsOnlyExtraPrompts(RewardFunction):
    """0 for the first batch's questions (so its groups are uninformative), a value of the transcript's
    characters otherwise (the random model's transcripts differ, so those groups are informative)."""

    def __init__(self) -> None:
        super().__init__(name="extra")

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
        return 0.0 if prompt in ("1+2=", "33+4=") else float(sum(map(ord, metadata["transcript"])) % 97)


def test_dynamic_sampling_refills_multi_turn_groups(policy_and_tokenizer) -> None:
    policy, tokenizer = policy_and_tokenizer
    engine = _engine(tokenizer, Scripted(), dynamic_sampling=DynamicSampling(max_extra_rounds=2))
    engine.composer = RewardComposer([RewardsOnlyExtraPrompts()])
    batches = iter([_batch(tokenizer, ["5+6=", "7+8="]) for _ in range(3)])
    rollout = engine.collect(policy, _batch(tokenizer, ["1+2=", "33+4="]), batches)
    assert rollout.stats["sampling/extra_rounds"] >= 1 and rollout.prompts == ["5+6=", "7+8="]
    assert rollout.stats["episode/count"] == 4 * (1 + rollout.stats["sampling/extra_rounds"])  # summed over rounds
    # The gathered groups keep their episodes' masks: environment tokens in the context, not in the loss.
    tp = rollout.prompt_length
    environment = (rollout.attention_mask[:, tp:] == 1) & (rollout.completion_mask == 0)
    assert environment.sum(dim=1).min() >= 3  # every episode ran more than one turn ("<1>" is 3 tokens)
    assert (rollout.completion_mask <= rollout.attention_mask[:, tp:]).all()
