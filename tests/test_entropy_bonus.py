"""The entropy bonus: its gradient in the objectives and through the log-prob pass, the adaptive
coefficient's controller, and its state."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from lightning_grpo.logprobs import _ChunkedTokenLogProbs, completion_logprobs
from lightning_grpo.models import load_causal_lm, load_tokenizer
from lightning_grpo.objectives import (
    ABCGRPO,
    CISPO,
    DAPO,
    GMPO,
    GRPO,
    GSPO,
    GTPO,
    RGRA,
    DrGRPO,
    EntropyBonus,
    Normalizers,
    ObjectiveInputs,
)

F64 = torch.float64
# Two rows: lengths 3 and 1 (N = 4 loss tokens, n = 2); entropies chosen by hand (padding carries 9).
ENTROPY = [[0.5, 1.0, 1.5], [2.0, 9.0, 9.0]]
MASK = [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]
NORM = Normalizers(num_sequences=2, num_tokens=4, max_length=3)


def run(objective, entropy=ENTROPY, mask=MASK, norm=NORM, advantages=(0.0, 0.0)):
    """On-policy, Â = 0 unless given: the loss is the entropy term alone (GTPO: λ = 0 below)."""
    logp = torch.full((2, 3), -1.0, dtype=F64, requires_grad=True)
    h = torch.tensor(entropy, dtype=F64, requires_grad=True)
    inputs = ObjectiveInputs(logp=logp, old_logp=logp.detach(), advantages=torch.tensor(advantages, dtype=F64),
                             mask=torch.tensor(mask, dtype=F64), normalizers=norm, entropy=h,
                             ref_logp=logp.detach().clone())
    loss, metrics = objective(inputs)
    g_logp, g_h = torch.autograd.grad(loss, [logp, h], allow_unused=True)
    return loss.detach(), g_logp, g_h, metrics


EVERY = [
    pytest.param(lambda b: GRPO(beta=0.0, aggregation="token_mean", entropy_bonus=b), id="GRPO"),
    pytest.param(lambda b: DAPO(entropy_bonus=b), id="DAPO"),
    pytest.param(lambda b: DrGRPO(entropy_bonus=b), id="DrGRPO"),
    pytest.param(lambda b: ABCGRPO(entropy_bonus=b), id="ABCGRPO"),
    pytest.param(lambda b: CISPO(entropy_bonus=b), id="CISPO"),
    pytest.param(lambda b: GSPO(entropy_bonus=b), id="GSPO"),
    pytest.param(lambda b: GMPO(entropy_bonus=b), id="GMPO"),
    pytest.param(lambda b: RGRA(beta=0.0, entropy_bonus=b), id="RGRA"),
    pytest.param(lambda b: GTPO(entropy_coef=0.0, entropy_threshold=math.inf, entropy_bonus=b), id="GTPO"),
]


@pytest.mark.parametrize("factory", EVERY)
def test_static_bonus_on_every_objective(factory):
    # token_mean (TRL's definition, the default): H̄ = (0.5 + 1 + 1.5 + 2)/4 = 1.25; loss −c H̄;
    # d loss / d H_t = −c M_t / N; the log-prob gradient is untouched (Â = 0 → 0).
    loss, g_logp, g_h, metrics = run(factory(EntropyBonus(coef=0.1)))
    assert loss.item() == pytest.approx(-0.125)
    torch.testing.assert_close(g_h, -0.1 * torch.tensor(MASK, dtype=F64) / 4)
    assert g_logp is None or g_logp.abs().max() == 0
    assert metrics["entropy_loss"].item() == pytest.approx(1.25)
    assert metrics["entropy_coef"].item() == pytest.approx(0.1)
    # without a bonus the entropy takes no part in the loss
    plain = factory(None)
    assert not plain.differentiable_entropy
    _, _, g_h, metrics = run(plain)
    assert (g_h is None or g_h.abs().max() == 0) and "entropy_loss" not in metrics


@pytest.mark.parametrize(
    "factory, expected, grad",
    [
        # the objective's own aggregation (verl): seq_mean_token_mean → (1 + 2)/2 = 1.5; dH_t = −c M/(|o_i| n)
        (lambda b: GRPO(beta=0.0, entropy_bonus=b), 1.5, [[1 / 6] * 3, [1 / 2, 0, 0]]),
        # constant_norm with K = 5: Σ M H / (n K) = 5/10
        (lambda b: DrGRPO(loss_scale_factor=5.0, entropy_bonus=b), 0.5, [[1 / 10] * 3, [1 / 10, 0, 0]]),
        # token_sum: Σ M H
        (lambda b: DAPO(aggregation="token_sum", entropy_bonus=b), 5.0, [[1.0] * 3, [1.0, 0, 0]]),
        # GTPO averages like its loss (mean over completions of token means)
        (lambda b: GTPO(entropy_coef=0.0, entropy_threshold=math.inf, entropy_bonus=b), 1.5, [[1 / 6] * 3, [1 / 2, 0, 0]]),
    ],
)
def test_bonus_with_the_objectives_aggregation(factory, expected, grad):
    loss, _, g_h, metrics = run(factory(EntropyBonus(coef=0.1, aggregation=None)))
    assert loss.item() == pytest.approx(-0.1 * expected)
    assert metrics["entropy_loss"].item() == pytest.approx(expected)
    torch.testing.assert_close(g_h, -0.1 * torch.tensor(grad, dtype=F64))


def test_adaptive_coefficient_is_gated_and_steered_towards_the_target():
    bonus = EntropyBonus(coef=0.01, adaptive=True, target=1.0, coef_delta=0.004, coef_min=0.0, coef_max=0.016)
    objective = GRPO(beta=0.0, entropy_bonus=bonus)
    assert objective.adaptive_entropy and objective.differentiable_entropy
    # Step 1: no measurement yet → the bonus is off (TRL starts from last entropy = inf).
    loss, _, g_h, metrics = run(objective)
    assert loss.item() == 0.0 and g_h.abs().max() == 0 and metrics["entropy_coef"].item() == 0.0
    trace = []
    for entropy in (0.5, 0.8, 0.9, 1.2, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0):
        objective.on_optimizer_step(entropy)
        trace.append((round(objective.state_dict()["entropy_coef"], 10), objective.applied_entropy_coef()))
    assert trace == [
        (0.014, 0.014),  # below target: up, and applied
        (0.016, 0.016),  # capped at coef_max
        (0.016, 0.016),
        (0.012, 0.0),  # above target: down, and off
        (0.016, 0.016),  # at the target counts as below (TRL's <=)
        (0.012, 0.0),
        (0.008, 0.0),
        (0.004, 0.0),
        (0.0, 0.0),
        (0.0, 0.0),  # floored at coef_min
    ]
    # applied coefficient reaches the loss
    objective.on_optimizer_step(0.2)
    loss, _, g_h, metrics = run(objective)
    assert objective.applied_entropy_coef() == pytest.approx(0.004)
    assert loss.item() == pytest.approx(-0.004 * 1.25)
    assert metrics["entropy_coef"].item() == pytest.approx(0.004)


def test_adaptive_bonus_starting_from_zero_switches_itself_on():
    # TRL: the adaptive bonus stays enabled at coefficient 0, so it can grow once entropy collapses.
    objective = GRPO(beta=0.0, entropy_bonus=EntropyBonus(coef=0.0, adaptive=True, target=1.0, coef_delta=0.01))
    assert objective.differentiable_entropy
    objective.on_optimizer_step(0.5)
    loss, _, g_h, metrics = run(objective)
    assert loss.item() == pytest.approx(-0.01 * 1.25)
    torch.testing.assert_close(g_h, -0.01 * torch.tensor(MASK, dtype=F64) / 4)
    assert metrics["entropy_coef"].item() == pytest.approx(0.01)


def test_adaptive_state_round_trips_and_a_static_bonus_has_none():
    bonus = EntropyBonus(coef=0.01, adaptive=True, target=1.0)
    a = GRPO(beta=0.0, entropy_bonus=bonus)
    a.on_optimizer_step(0.3)
    state = a.state_dict()
    assert state == {"entropy_coef": pytest.approx(0.015), "last_entropy": 0.3}
    b = GRPO(beta=0.0, entropy_bonus=bonus)
    assert b.applied_entropy_coef() == 0.0
    b.load_state_dict(state)
    assert b.applied_entropy_coef() == pytest.approx(0.015) and b.state_dict() == state
    static = GRPO(beta=0.0, entropy_bonus=EntropyBonus(coef=0.01))
    static.on_optimizer_step(5.0)
    assert static.state_dict() == {} and static.applied_entropy_coef() == 0.01
    assert GRPO().state_dict() == {}


def test_bonus_needs_the_entropy_and_validates():
    logp = torch.zeros(1, 1, dtype=F64, requires_grad=True)
    inputs = ObjectiveInputs(logp=logp, old_logp=logp.detach(), advantages=torch.zeros(1, dtype=F64),
                             mask=torch.ones(1, 1, dtype=F64), normalizers=Normalizers(1, 1, 1))
    with pytest.raises(ValueError, match="entropy"):
        GRPO(beta=0.0, entropy_bonus=EntropyBonus(coef=0.1))(inputs)
    with pytest.raises(ValueError, match="-0.1"):
        EntropyBonus(adaptive=True, coef_delta=-0.1)
    with pytest.raises(ValueError, match="coef_min"):
        EntropyBonus(adaptive=True, coef_min=0.5, coef_max=0.1)
    with pytest.raises(ValueError, match="'tokens'"):
        EntropyBonus(aggregation="tokens")
    with pytest.raises(TypeError, match="EntropyBonus"):
        GRPO(entropy_bonus=0.1)
    # a zero static coefficient is no bonus at all (TRL: enabled iff coef != 0 or adaptive)
    assert not GRPO(entropy_bonus=EntropyBonus(coef=0.0)).differentiable_entropy
    assert GRPO().applied_entropy_coef() == 0.0  # no bonus: coefficient 0


def test_adaptive_bonus_bounds_at_their_edges():
    # coef_delta must be > 0 (0 is refused by name); coef_min = coef_max pins the coefficient;
    # target 0 nats is allowed (the bonus applies only once a step's entropy is exactly 0).
    with pytest.raises(ValueError, match="coef_delta must be > 0.*got 0"):
        EntropyBonus(adaptive=True, coef_delta=0.0)
    pinned = GRPO(entropy_bonus=EntropyBonus(coef=0.3, adaptive=True, coef_min=0.3, coef_max=0.3, target=0.0))
    pinned.on_optimizer_step(0.5)  # above target: c would fall, but not below coef_min; gated off
    assert pinned.applied_entropy_coef() == 0.0
    pinned.on_optimizer_step(0.0)  # at target: c would rise, but not above coef_max; applied
    assert pinned.applied_entropy_coef() == 0.3


# --------------------------------------------------------------------------- the log-prob pass


def _reference(logits: torch.Tensor, targets: torch.Tensor, temperature: float):
    log_probs = torch.log_softmax(logits.double() / temperature, dim=-1)
    return log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1), -(log_probs.exp() * log_probs).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("uses", ["both", "entropy", "logp"])
def test_entropy_gradient_of_the_chunked_pass(temperature, uses):
    """d(a·logp + b·H)/d logits of the autograd function equals the direct softmax's, across blocks."""
    gen = torch.Generator().manual_seed(0)
    rows, vocab = 7, 11
    logits = (3 * torch.randn(rows, vocab, generator=gen)).requires_grad_(True)
    targets = torch.randint(vocab, (rows,), generator=gen)
    a = torch.randn(rows, generator=gen) if uses != "entropy" else torch.zeros(rows)
    b = torch.randn(rows, generator=gen) if uses != "logp" else torch.zeros(rows)
    logp, entropy = _ChunkedTokenLogProbs.apply(logits, None, None, targets, temperature, None, 2, True, True)
    terms = []
    if uses != "entropy":
        terms.append((a * logp).sum())
    if uses != "logp":
        terms.append((b * entropy).sum())
    (grad,) = torch.autograd.grad(sum(terms), logits)
    leaf = logits.detach().double().requires_grad_(True)
    ref_logp, ref_entropy = _reference(leaf, targets, temperature)
    (expected,) = torch.autograd.grad((a.double() * ref_logp).sum() + (b.double() * ref_entropy).sum(), leaf)
    torch.testing.assert_close(logp.double(), ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy.double(), ref_entropy, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad.double(), expected, atol=1e-5, rtol=1e-4)
    assert expected.abs().max() > 0.01


def test_entropy_is_detached_unless_asked():
    logits = torch.randn(3, 5, requires_grad=True)
    targets = torch.tensor([0, 1, 2])
    _, entropy = _ChunkedTokenLogProbs.apply(logits, None, None, targets, 1.0, None, 64, True, False)
    assert not entropy.requires_grad
    _, entropy = _ChunkedTokenLogProbs.apply(logits, None, None, targets, 1.0, None, 64, True, True)
    assert entropy.requires_grad


def test_entropy_gradient_through_the_model(tiny_model_dir):
    model = load_causal_lm(str(tiny_model_dir))
    tokenizer = load_tokenizer(str(tiny_model_dir))
    prompt = tokenizer(["2+2=", "40+2="], padding=True, return_tensors="pt", add_special_tokens=False)
    completion = torch.tensor([[5, 6, 7], [8, 9, 10]])
    ids = torch.cat([prompt["input_ids"], completion], 1)
    mask = torch.cat([prompt["attention_mask"], torch.ones_like(completion)], 1)
    tp = prompt["input_ids"].shape[1]
    _, entropy = completion_logprobs(model, ids, mask, tp, temperature=0.8, chunk_size=1, entropy_grad=True)
    weight = model.model.embed_tokens.weight
    (grad,) = torch.autograd.grad(entropy.sum(), weight)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, tp - 1 : -1] / 0.8
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    (expected,) = torch.autograd.grad(-(log_probs.exp() * log_probs).sum(), weight)
    torch.testing.assert_close(grad, expected, atol=1e-5, rtol=1e-4)
    assert expected.abs().max() > 0


def test_defaults_are_trls():
    # "Defaults follow TRL 1.16" (EntropyBonus's docstring), read from TRL's own config, not restated.
    trl = pytest.importorskip("trl")
    config = {f.name: f.default for f in dataclasses.fields(trl.GRPOConfig)}
    bonus = EntropyBonus()
    assert bonus.coef == config["entropy_coef"]
    assert bonus.adaptive == config["use_adaptive_entropy"]
    assert bonus.target == config["entropy_target"]
    assert bonus.coef_delta == config["entropy_coef_delta"]
    assert (bonus.coef_min, bonus.coef_max) == (config["entropy_coef_min"], config["entropy_coef_max"])
