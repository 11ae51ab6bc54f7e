"""GRPO on hand-built tensors: values and gradients derived by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_grpo.objectives import GRPO, Normalizers, ObjectiveInputs


def make_inputs(ratios, logp, adv, mask, norm, ref_logp=None):
    """logp is a leaf with grad; old_logp = logp − log(ratio) so ρ equals ``ratios`` exactly."""
    logp = torch.tensor(logp, dtype=torch.float64, requires_grad=True)
    old = logp.detach() - torch.log(torch.tensor(ratios, dtype=torch.float64))
    ref = None if ref_logp is None else torch.tensor(ref_logp, dtype=torch.float64)
    inputs = ObjectiveInputs(
        logp=logp,
        old_logp=old,
        advantages=torch.tensor(adv, dtype=torch.float64),
        mask=torch.tensor(mask, dtype=torch.float64),
        normalizers=norm,
        ref_logp=ref,
    )
    return inputs, logp


# Row 0: Â = +1, ρ = [1.5, 1.0, 0.5], all three tokens are loss tokens.
# Row 1: Â = −1, ρ = [1.5, 0.7, 0.5], the last token is padding (mask 0).
RATIOS = [[1.5, 1.0, 0.5], [1.5, 0.7, 0.5]]
LOGP = [[-1.0, -2.0, -0.5], [-0.3, -1.2, -2.5]]
ADV = [1.0, -1.0]
MASK = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
NORM = Normalizers(num_sequences=2, num_tokens=5, max_length=4)
# Per token, ε = 0.2, L = −min(ρÂ, clip(ρ, 0.8, 1.2)Â) and dL/dlogp = −Âρ unless clipped (then 0):
# row 0 (Â=+1): ρ=1.5 → min(1.5, 1.2) = 1.2, L = −1.2, clipped (grad 0)
#               ρ=1.0 → L = −1.0, grad −1.0
#               ρ=0.5 → min(0.5, 0.8) = 0.5, L = −0.5, grad −0.5
# row 1 (Â=−1): ρ=1.5 → min(−1.5, −1.2) = −1.5, L = 1.5, grad +1.5
#               ρ=0.7 → min(−0.7, −0.8) = −0.8, L = 0.8, clipped (grad 0)
PER_TOKEN = [[-1.2, -1.0, -0.5], [1.5, 0.8, 0.0]]
PER_TOKEN_GRAD = [[0.0, -1.0, -0.5], [1.5, 0.0, 0.0]]
# Σ M·L = −2.7 + 2.3 = −0.4


@pytest.mark.parametrize(
    "aggregation, loss_scale_factor, expected_loss, grad_scale",
    [
        # row means: −2.7/3 = −0.9 and 2.3/2 = 1.15; mean over n = 2 → 0.125.
        # grad of a row-i token: per-token grad / |o_i| / n
        ("seq_mean_token_mean", None, 0.125, [[1 / 6] * 3, [1 / 4] * 3]),
        # −0.4 / N (=5)
        ("token_mean", None, -0.08, [[1 / 5] * 3, [1 / 5] * 3]),
        # −0.4 / n (=2)
        ("seq_mean_token_sum", None, -0.2, [[1 / 2] * 3, [1 / 2] * 3]),
        # −0.4 / (n · L_max) = −0.4 / 8
        ("constant_norm", None, -0.05, [[1 / 8] * 3, [1 / 8] * 3]),
        # verl's loss_scale_factor K replaces L_max: −0.4 / (2 · 5)
        ("constant_norm", 5.0, -0.04, [[1 / 10] * 3, [1 / 10] * 3]),
        # verl's token-sum: no normaliser at all
        ("token_sum", None, -0.4, [[1.0] * 3, [1.0] * 3]),
        # a loss_scale_factor does not touch the other modes
        ("token_mean", 5.0, -0.08, [[1 / 5] * 3, [1 / 5] * 3]),
    ],
)
def test_grpo_aggregations(aggregation, loss_scale_factor, expected_loss, grad_scale):
    inputs, logp = make_inputs(RATIOS, LOGP, ADV, MASK, NORM)
    loss, metrics = GRPO(beta=0.0, aggregation=aggregation, loss_scale_factor=loss_scale_factor)(inputs)
    loss.backward()
    assert loss.item() == pytest.approx(expected_loss, abs=1e-12)
    expected_grad = torch.tensor(PER_TOKEN_GRAD, dtype=torch.float64) * torch.tensor(grad_scale, dtype=torch.float64)
    torch.testing.assert_close(logp.grad, expected_grad)
    # clip fractions: low = ρ < 0.8 with Â < 0 → row 1 token 1 only (row 1 token 2 has ρ = 0.5
    # but is padding); high = ρ > 1.2 with Â > 0 → row 0 token 0. Each 1 / N = 0.2.
    assert metrics["clip_frac_low"].item() == pytest.approx(0.2)
    assert metrics["clip_frac_high"].item() == pytest.approx(0.2)
    assert "kl" not in metrics


def test_grpo_asymmetric_clip_ranges():
    # ε_low = 0.1, ε_high = 0.6: row 0's ρ = 1.5 is now inside (L = −1.5, grad −1.5), row 0's ρ = 0.5
    # still unclipped for Â > 0; row 1's ρ = 0.7 < 0.9 stays clipped at 0.9: L = 0.9.
    # token_mean: Σ M·L = (−1.5 − 1.0 − 0.5) + (1.5 + 0.9) = −0.6 → /5 = −0.12
    inputs, logp = make_inputs(RATIOS, LOGP, ADV, MASK, NORM)
    loss, metrics = GRPO(epsilon_low=0.1, epsilon_high=0.6, beta=0.0, aggregation="token_mean")(inputs)
    loss.backward()
    assert loss.item() == pytest.approx(-0.12)
    torch.testing.assert_close(
        logp.grad, torch.tensor([[-1.5, -1.0, -0.5], [1.5, 0.0, 0.0]], dtype=torch.float64) / 5
    )
    assert metrics["clip_frac_high"].item() == 0.0
    assert metrics["clip_frac_low"].item() == pytest.approx(0.2)


@pytest.mark.parametrize(
    "ratio, adv, low, high",
    [
        # ε = 0.2: clip_frac_low counts ρ < 0.8 with Â < 0 only; clip_frac_high ρ > 1.2 with Â > 0 only
        (0.7, -1.0, 1, 0),
        (0.9, -1.0, 0, 0),  # inside (1 − ε, 1 + ε) with Â < 0: a bound at 1 + ε_low would count it
        (1.1, -1.0, 0, 0),
        (1.5, -1.0, 0, 0),  # above the range with Â < 0 is not clipped (PPO's unbounded side)
        (0.7, 1.0, 0, 0),  # below the range with Â > 0 is not clipped
        (1.1, 1.0, 0, 0),
        (1.3, 1.0, 0, 1),
        (1.3, 0.0, 0, 0),  # Â = 0 is on neither side
        (0.7, 0.0, 0, 0),
    ],
)
def test_grpo_clip_fractions_by_sign_and_bound(ratio, adv, low, high):
    norm = Normalizers(num_sequences=1, num_tokens=2, max_length=2)
    # the second token is padding with a ratio that would count on both sides
    inputs, _ = make_inputs([[ratio, 0.5 if adv < 0 else 2.0]], [[-1.0, -1.0]], [adv], [[1.0, 0.0]], norm)
    _, metrics = GRPO(beta=0.0)(inputs)
    assert metrics["clip_frac_low"].item() == pytest.approx(low / 2)
    assert metrics["clip_frac_high"].item() == pytest.approx(high / 2)


def test_grpo_dual_clip():
    # One row, Â = −1, ρ = [4.0, 2.0], c = 3.
    # ρ = 4: plain L = −min(−4, −1.2) = 4; dual: min(c·|Â|, 4) = 3 → gradient 0.
    # ρ = 2: plain L = 2 < 3, kept, grad = −Âρ = 2.
    # token_mean over N = 2: (3 + 2)/2 = 2.5; grads [0, 2]/2.
    norm = Normalizers(num_sequences=1, num_tokens=2, max_length=2)
    inputs, logp = make_inputs([[4.0, 2.0]], [[-1.0, -1.0]], [-1.0], [[1.0, 1.0]], norm)
    loss, metrics = GRPO(beta=0.0, aggregation="token_mean", dual_clip=3.0)(inputs)
    loss.backward()
    assert loss.item() == pytest.approx(2.5)
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 1.0]], dtype=torch.float64))
    assert metrics["dual_clip_frac"].item() == pytest.approx(0.5)
    # without dual clip: (4 + 2)/2 = 3, grads [4, 2]/2
    inputs, logp = make_inputs([[4.0, 2.0]], [[-1.0, -1.0]], [-1.0], [[1.0, 1.0]], norm)
    loss, _ = GRPO(beta=0.0, aggregation="token_mean")(inputs)
    loss.backward()
    assert loss.item() == pytest.approx(3.0)
    torch.testing.assert_close(logp.grad, torch.tensor([[2.0, 1.0]], dtype=torch.float64))


def test_grpo_k3_kl():
    # One row, on-policy (ρ ≡ 1), Â = 0.5, β = 0.1; ref − logp = δ = [ln 2, 0].
    # k3 = e^δ − δ − 1: token 0 → 2 − ln 2 − 1 = 1 − ln 2; token 1 → 0.
    # d k3 / d logp = −e^δ + 1: token 0 → −1; token 1 → 0.
    # L_t = −Â + β k3: mean over the 2 tokens = −0.5 + 0.1 (1 − ln 2)/2.
    # grads: (−0.5 + 0.1·(−1))/2 = −0.3 and (−0.5 + 0)/2 = −0.25.
    norm = Normalizers(num_sequences=1, num_tokens=2, max_length=2)
    logp_values = [[-1.0, -2.0]]
    ref = [[-1.0 + math.log(2.0), -2.0]]
    inputs, logp = make_inputs([[1.0, 1.0]], logp_values, [0.5], [[1.0, 1.0]], norm, ref_logp=ref)
    objective = GRPO(beta=0.1)
    assert objective.needs_reference
    loss, metrics = objective(inputs)
    loss.backward()
    assert loss.item() == pytest.approx(-0.5 + 0.05 * (1 - math.log(2.0)))
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.3, -0.25]], dtype=torch.float64))
    # kl metric: Σ M k3 / N = (1 − ln 2)/2
    assert metrics["kl"].item() == pytest.approx((1 - math.log(2.0)) / 2)


def test_grpo_kl_ratio_weighted():
    # ρ = 2 on the single token, δ = ref − logp = ln 2 → k3 = 1 − ln 2; TRL's form multiplies by ρ:
    # β ρ k3 = 0.1 · 2 · (1 − ln 2). Surrogate with Â = 0 is 0.
    # Gradient: d(ρ k3)/dlogp = ρ k3 + ρ (1 − e^δ) = 2 (1 − ln 2) − 2 = −2 ln 2 (ρ keeps its gradient,
    # dρ/dlogp = ρ); a detached ρ would give ρ (1 − e^δ) = −2 instead, with the same value.
    norm = Normalizers(num_sequences=1, num_tokens=1, max_length=1)
    inputs, logp = make_inputs([[2.0]], [[-1.0]], [0.0], [[1.0]], norm, ref_logp=[[-1.0 + math.log(2.0)]])
    loss, metrics = GRPO(beta=0.1, kl_ratio_weighted=True)(inputs)
    loss.backward()
    assert loss.item() == pytest.approx(0.2 * (1 - math.log(2.0)))
    assert logp.grad.item() == pytest.approx(-0.2 * math.log(2.0))
    assert metrics["kl"].item() == pytest.approx(2 * (1 - math.log(2.0)))  # TRL logs the weighted kl
    inputs, logp = make_inputs([[2.0]], [[-1.0]], [0.0], [[1.0]], norm, ref_logp=[[-1.0 + math.log(2.0)]])
    loss, _ = GRPO(beta=0.1)(inputs)
    loss.backward()
    assert loss.item() == pytest.approx(0.1 * (1 - math.log(2.0)))
    assert logp.grad.item() == pytest.approx(0.1 * (1 - 2.0))  # d k3 / dlogp = 1 − e^δ


# One token, on-policy, Â = 0 (the surrogate is 0), β = 0.1, δ = ref − logp = 0.5:
#   k1 = −δ, dk1/dlogp = +1 (a flipped sign would give +δ and −1)
#   k2 = δ²/2, dk2/dlogp = −δ
#   k3 = e^δ − δ − 1, dk3/dlogp = 1 − e^δ
#   k1+ / k3+ (verl): the value of k1 / k3, the gradient of k2
_D = 0.5


@pytest.mark.parametrize(
    "estimator, value, grad",
    [
        ("k1", -_D, 1.0),
        ("k2", _D**2 / 2, -_D),
        ("k3", math.exp(_D) - _D - 1, 1 - math.exp(_D)),
        ("k1+", -_D, -_D),
        ("k3+", math.exp(_D) - _D - 1, -_D),
    ],
)
def test_kl_estimators_value_and_gradient(estimator, value, grad):
    norm = Normalizers(num_sequences=1, num_tokens=1, max_length=1)
    inputs, logp = make_inputs([[1.0]], [[-1.0]], [0.0], [[1.0]], norm, ref_logp=[[-1.0 + _D]])
    loss, metrics = GRPO(beta=0.1, kl_estimator=estimator)(inputs)
    loss.backward()
    assert loss.item() == pytest.approx(0.1 * value, abs=1e-12)
    assert logp.grad.item() == pytest.approx(0.1 * grad, abs=1e-12)
    assert metrics["kl"].item() == pytest.approx(value, abs=1e-12)


def test_grpo_needs_ref_when_beta_positive():
    inputs, _ = make_inputs(RATIOS, LOGP, ADV, MASK, NORM)
    with pytest.raises(ValueError, match="ref_logp"):
        GRPO(beta=0.04)(inputs)
    assert not GRPO(beta=0.0).needs_reference


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"epsilon_low": -0.1}, "-0.1"),
        ({"epsilon_high": -2.0}, "-2.0"),
        ({"beta": -1.0}, "-1.0"),
        ({"dual_clip": 0.5}, "0.5"),
        ({"aggregation": "sum"}, "'sum'"),
        ({"kl_estimator": "k4"}, "'k4'"),
        ({"kl_estimator": "k2+"}, "'k2\\+'"),
        ({"loss_scale_factor": 0.0}, "0.0"),
    ],
)
def test_grpo_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GRPO(**kwargs)


@pytest.mark.parametrize(
    "aggregation", ["seq_mean_token_mean", "token_mean", "seq_mean_token_sum", "constant_norm", "token_sum"]
)
def test_grpo_micro_batch_additivity(aggregation):
    # Splitting the rows into two micro-batches with the same global Normalizers gives the same total
    # loss and the same gradient as one pass (docs/algorithms.md §1).
    gen = torch.Generator().manual_seed(0)
    b, t = 6, 5
    logp = (-torch.rand(b, t, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)
    old = logp.detach() + 0.4 * torch.randn(b, t, generator=gen, dtype=torch.float64)
    ref = logp.detach() + 0.3 * torch.randn(b, t, generator=gen, dtype=torch.float64)
    adv = torch.randn(b, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 1, 4, 0, 2])
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).double()
    norm = Normalizers(num_sequences=float((lengths > 0).sum()), num_tokens=float(mask.sum()), max_length=float(t))
    objective = GRPO(beta=0.05, aggregation=aggregation, dual_clip=3.0, kl_ratio_weighted=True)

    def run(rows):
        inputs = ObjectiveInputs(logp=logp[rows], old_logp=old[rows], advantages=adv[rows], mask=mask[rows],
                                 normalizers=norm, ref_logp=ref[rows])
        return objective(inputs)

    full, full_metrics = run(slice(0, b))
    (full_grad,) = torch.autograd.grad(full, logp)
    first, m1 = run(slice(0, 3))
    second, m2 = run(slice(3, b))
    split_grad = torch.autograd.grad(first + second, logp)[0]
    torch.testing.assert_close(first + second, full)
    torch.testing.assert_close(split_grad, full_grad)
    for key, value in full_metrics.items():
        torch.testing.assert_close(m1[key] + m2[key], value)


# ---- found by the rule-based mutation check (tools/mutation_check.py lightning_grpo/objectives/grpo.py)


def test_grpo_defaults_are_the_papers():
    objective = GRPO()
    assert (objective.epsilon_low, objective.epsilon_high, objective.beta) == (0.2, 0.2, 0.04)
    assert objective.aggregation == "seq_mean_token_mean" and objective.dual_clip is None
    assert objective.needs_reference


def test_clip_fractions_are_strict_at_the_bounds():
    # ρ exactly 1 − ε_low = 0.8 (Â < 0) and exactly 1 + ε_high = 1.2 (Â > 0) are not clipped (TRL's < and >);
    # ρ = 0.5 with Â < 0 and ρ = 2 with Â > 0 are. logp = 0 keeps ρ = exp(log ρ) exact in float64.
    norm = Normalizers(num_sequences=2, num_tokens=4, max_length=2)
    inputs, _ = make_inputs([[1.2, 2.0], [0.8, 0.5]], [[0.0, 0.0], [0.0, 0.0]], [1.0, -1.0], [[1.0] * 2] * 2, norm)
    _, metrics = GRPO(beta=0.0)(inputs)
    assert metrics["clip_frac_high"].item() == 0.25 and metrics["clip_frac_low"].item() == 0.25


def test_dual_clip_acts_on_negative_advantages_only_and_strictly_above_c():
    # c = 2, ε = 0.2, Â = [−0.5, 0.5, 0] on rows of ρ = [2, 4]:
    # Â = −0.5: ρ = 2 → L = 0.5·max(2, 1.2) = 1.0 = c·|Â|: at the bound, not beyond (not counted);
    #           ρ = 4 → PPO L = 2.0 > c·|Â| = 1.0 → L = 1.0, counted, grad 0.
    # Â = +0.5 (0 < Â < 1): dual clip never applies: L = −0.5·min(ρ, 1.2) = −0.6, clipped, grad 0.
    # Â = 0: L = 0, never counted.
    norm = Normalizers(num_sequences=3, num_tokens=6, max_length=2)
    inputs, logp = make_inputs([[2.0, 4.0]] * 3, [[0.0, 0.0]] * 3, [-0.5, 0.5, 0.0], [[1.0] * 2] * 3, norm)
    loss, metrics = GRPO(beta=0.0, aggregation="token_sum", dual_clip=2.0)(inputs)
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(1.0 + 1.0 - 0.6 - 0.6)
    # (at the tie ρ = c, torch.min splits the gradient between its arguments: not asserted)
    torch.testing.assert_close(grad[:, 1], torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(grad[1:, 0], torch.zeros(2, dtype=torch.float64))
    assert metrics["dual_clip_frac"].item() == pytest.approx(1 / 6)


def test_clip_ranges_at_their_edges():
    # ε = 0 is allowed (ρ clipped to exactly 1); a negative ε and a dual-clip constant of 1 are refused by name.
    norm = Normalizers(num_sequences=1, num_tokens=2, max_length=2)
    inputs, logp = make_inputs([[1.2, 0.8]], [[0.0, 0.0]], [1.0], [[1.0, 1.0]], norm)
    loss, _ = GRPO(epsilon_low=0.0, epsilon_high=0.0, beta=0.0, aggregation="token_sum")(inputs)
    assert loss.item() == pytest.approx(-(1.0 + 0.8))  # −min(1.2, 1) − min(0.8, 1)
    with pytest.raises(ValueError, match="epsilon_low=-0.1"):
        GRPO(epsilon_low=-0.1)
    with pytest.raises(ValueError, match="epsilon_high=-0.1"):
        GRPO(epsilon_high=-0.1)
    with pytest.raises(ValueError, match="dual_clip must be > 1.*got 1.0"):
        GRPO(dual_clip=1.0)
