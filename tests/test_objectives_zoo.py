"""The objectives beyond GRPO and GTPO on hand-built tensors, the oracles of docs/algorithms.md, and what
every objective shares (KL term, aggregation, micro-batch additivity, bad hyper-parameters)."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_grpo.objectives.base import sequence_fraction, token_fraction
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
from tests.objective_batches import F64, build, loss_and_grad, make_inputs, random_batch, t

# --------------------------------------------------------------------------------------- ABC-GRPO


def test_abc_grpo_hand_values():
    # ε1 = 0.3, ε2 = 0.1 (Â > 0: ρ ∈ [0.9, 1.3]); ε3 = 0.25, ε4 = 0.15 (Â ≤ 0: ρ ∈ [0.85, 1.25]).
    # Row 0, Â = +1,   ρ = [1.5, 0.5, 1.0] → ρ̃ = [1.3, 0.9, 1.0]   L = −ρ̃Â = [−1.3, −0.9, −1.0]
    # Row 1, Â = −0.5, ρ = [1.5, 0.5, 1.1] → ρ̃ = [1.25, 0.85, 1.1] L = [0.625, 0.425, 0.55]
    # Only unclipped tokens carry gradient −Âρ: row 0 token 2 → −1.0; row 1 token 2 → 0.55.
    # (GRPO would not clip row 0's ρ = 0.5, Q2, nor row 1's ρ = 1.5, Q4.)
    # seq_mean_token_mean, n = 2: row means −3.2/3 and 1.6/3 → loss = (−3.2 + 1.6)/6 = −0.26667.
    # grads ÷ (|o| = 3) ÷ (n = 2).
    norm = Normalizers(num_sequences=2, num_tokens=6, max_length=3)
    log_ratio = [[math.log(1.5), math.log(0.5), 0.0], [math.log(1.5), math.log(0.5), math.log(1.1)]]
    inputs, logp = make_inputs(log_ratio, [[-1.0] * 3] * 2, [1.0, -0.5], [[1.0] * 3] * 2, norm)
    objective = ABCGRPO(epsilon_1=0.3, epsilon_2=0.1, epsilon_3=0.25, epsilon_4=0.15)
    assert not objective.needs_reference
    loss, grad, metrics = loss_and_grad(objective, inputs, logp)
    assert loss.item() == pytest.approx(-1.6 / 6)
    torch.testing.assert_close(grad, t([[0.0, 0.0, -1.0 / 6], [0.0, 0.0, 0.55 / 6]]))
    # one token of the six in each quadrant: Q1 (Â>0, ρ=1.5), Q2 (Â>0, ρ=0.5), Q3 (Â<0, ρ=0.5), Q4 (Â<0, ρ=1.5)
    for q in ("q1", "q2", "q3", "q4"):
        assert metrics[f"clip_frac_{q}"].item() == pytest.approx(1 / 6)


@pytest.mark.parametrize(
    "ratio, adv, quadrant",
    [
        # ε1 = 0.3, ε2 = 0.1 (Â > 0: [0.9, 1.3]); ε3 = 0.25, ε4 = 0.15 (Â < 0: [0.85, 1.25])
        (1.35, 1.0, "q1"),
        (1.28, 1.0, None),
        (0.88, 1.0, "q2"),
        (0.92, 1.0, None),
        (0.8, -1.0, "q3"),
        (0.87, -1.0, None),  # above 1 − ε4 but below 1 − ε2: the Â < 0 bound is ε4's
        (1.27, -1.0, "q4"),
        (1.22, -1.0, None),
        (1.5, 0.0, None),  # Â = 0 is in no quadrant
        (0.5, 0.0, None),
    ],
)
def test_abc_grpo_quadrant_metrics_by_region(ratio, adv, quadrant):
    norm = Normalizers(num_sequences=1, num_tokens=1, max_length=1)
    inputs, logp = make_inputs([[math.log(ratio)]], [[-1.0]], [adv], [[1.0]], norm)
    objective = ABCGRPO(epsilon_1=0.3, epsilon_2=0.1, epsilon_3=0.25, epsilon_4=0.15)
    _, grad, metrics = loss_and_grad(objective, inputs, logp)
    for q in ("q1", "q2", "q3", "q4"):
        assert metrics[f"clip_frac_{q}"].item() == (1.0 if q == quadrant else 0.0), q
    # clipped tokens carry no gradient; unclipped ones −Âρ
    assert grad.item() == pytest.approx(0.0 if quadrant or adv == 0 else -adv * ratio)


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "token_mean"])
def test_abc_grpo_on_policy_equals_grpo(aggregation):
    # Oracle: ρ ≡ 1 (old = stopgrad(logp)) → same value and gradient as GRPO, KL included.
    logp, _, ref, adv, mask, norm = random_batch(seed=1)
    zero = torch.zeros_like(logp)
    inputs, leaf = build(logp, zero, ref, adv, mask, norm)
    abc = loss_and_grad(ABCGRPO(beta=0.04, aggregation=aggregation), inputs, leaf)
    inputs, leaf = build(logp, zero, ref, adv, mask, norm)
    grpo = loss_and_grad(GRPO(beta=0.04, aggregation=aggregation), inputs, leaf)
    torch.testing.assert_close(abc[0], grpo[0])
    torch.testing.assert_close(abc[1], grpo[1])


def test_abc_grpo_negative_advantage_equals_dual_clip_grpo():
    # Oracle: for Â < 0, clip(ρ, 1 − ε4, 1 + ε3)·|Â| = min(c|Â|, max(ρ, clip(ρ, 1 − ε_low, ·))·|Â|)
    # with c = 1 + ε3 and ε_low = ε4 (GRPO's upper clip is inactive for Â < 0).
    logp, log_ratio, ref, adv, mask, norm = random_batch(seed=2, spread=0.6, positive=False)
    inputs, leaf = build(logp, log_ratio, ref, adv, mask, norm)
    abc = loss_and_grad(ABCGRPO(epsilon_3=0.5, epsilon_4=0.3, beta=0.02), inputs, leaf)
    inputs, leaf = build(logp, log_ratio, ref, adv, mask, norm)
    grpo = loss_and_grad(GRPO(epsilon_low=0.3, epsilon_high=0.2, beta=0.02, dual_clip=1.5), inputs, leaf)
    torch.testing.assert_close(abc[0], grpo[0])
    torch.testing.assert_close(abc[1], grpo[1])
    assert abc[2]["clip_frac_q4"] > 0 and abc[2]["clip_frac_q3"] > 0  # the test exercises both bounds


# --------------------------------------------------------------------------------------- RGRA


def test_rgra_hand_values():
    # L = −(1/n) Σ_i (1/|o_i|) Σ_t M [Â_i logp_t − β k3_t], β = 0.005 default.
    # Row 0: Â = 2, logp = [−1, −3], ref = logp (k3 = 0) → −(2·(−1) + 2·(−3))/2 = 4
    # Row 1: Â = −1, logp = [−2, pad], ref − logp = ln 2 → k3 = 1 − ln 2, dk3/dlogp = −1
    #        → −(−1·(−2)) + 0.005 (1 − ln 2) = −2 + 0.005 (1 − ln 2)
    # n = 2: loss = (4 − 2 + 0.005 (1 − ln 2)) / 2.
    # grads: row 0: −Â/|o|/n = −2/2/2 = −0.5 each; row 1: (−Â + β·(−1))/1/2 = (1 − 0.005)/2.
    norm = Normalizers(num_sequences=2, num_tokens=3, max_length=2)
    logp_v = [[-1.0, -3.0], [-2.0, -5.0]]
    ref = [[-1.0, -3.0], [-2.0 + math.log(2.0), 0.0]]
    inputs, logp = make_inputs([[0.3, 0.3], [0.3, 0.3]], logp_v, [2.0, -1.0], [[1.0, 1.0], [1.0, 0.0]], norm, ref)
    objective = RGRA()
    assert objective.beta == 0.005 and objective.needs_reference
    loss, grad, metrics = loss_and_grad(objective, inputs, logp)
    assert loss.item() == pytest.approx((2 + 0.005 * (1 - math.log(2.0))) / 2)
    torch.testing.assert_close(grad, t([[-0.5, -0.5], [0.995 / 2, 0.0]]))
    assert metrics["kl"].item() == pytest.approx((1 - math.log(2.0)) / 3)


@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_rgra_gradient_equals_one_step_grpo(beta):
    # Oracle: with ρ ≡ 1, ∇(−ρÂ) = −Â∇logp = ∇(−Â logp); the KL terms are identical.
    logp, _, ref, adv, mask, norm = random_batch(seed=3)
    zero = torch.zeros_like(logp)
    inputs, leaf = build(logp, zero, ref, adv, mask, norm)
    rgra = loss_and_grad(RGRA(beta=beta), inputs, leaf)
    inputs, leaf = build(logp, zero, ref, adv, mask, norm)
    grpo = loss_and_grad(GRPO(beta=beta), inputs, leaf)
    torch.testing.assert_close(rgra[1], grpo[1])


# --------------------------------------------------------------------------------------- DAPO / Dr. GRPO


def test_dapo_defaults_and_values():
    objective = DAPO()
    assert (objective.epsilon_low, objective.epsilon_high, objective.beta) == (0.2, 0.28, 0.0)
    assert objective.aggregation == "token_mean" and not objective.needs_reference
    # One row Â = 1, ρ = [1.25, 1.3]: clip-higher keeps 1.25 (< 1.28; GRPO's 1.2 would clip it), 1.3 → 1.28.
    # token_mean over N = 2: −(1.25 + 1.28)/2; grads [−1.25, 0]/2.
    norm = Normalizers(num_sequences=1, num_tokens=2, max_length=2)
    inputs, logp = make_inputs([[math.log(1.25), math.log(1.3)]], [[-1.0, -1.0]], [1.0], [[1.0, 1.0]], norm)
    loss, grad, metrics = loss_and_grad(objective, inputs, logp)
    assert loss.item() == pytest.approx(-(1.25 + 1.28) / 2)
    torch.testing.assert_close(grad, t([[-0.625, 0.0]]))
    assert metrics["clip_frac_high"].item() == pytest.approx(0.5)


def test_dr_grpo_defaults_and_values():
    objective = DrGRPO()
    assert (objective.epsilon_low, objective.epsilon_high, objective.beta) == (0.2, 0.2, 0.0)
    # On-policy, Â = [1, −1], lengths 3 and 1, L_max = 4, n = 2: Σ M·L = −3 + 1 = −2 → −2/(2·4) = −0.25.
    # Every token's gradient is −Â / (n L_max) = ∓1/8, independent of the completion length.
    norm = Normalizers(num_sequences=2, num_tokens=4, max_length=4)
    inputs, logp = make_inputs([[0.0] * 3] * 2, [[-1.0] * 3] * 2, [1.0, -1.0], [[1.0] * 3, [1.0, 0, 0]], norm)
    loss, grad, _ = loss_and_grad(objective, inputs, logp)
    assert loss.item() == pytest.approx(-0.25)
    torch.testing.assert_close(grad, t([[-1 / 8] * 3, [1 / 8, 0.0, 0.0]]))


def test_dr_grpo_asymmetric_clip():
    # TRL's dr_grpo with epsilon_high: Â = +1, ρ = [1.25, 1.3], Â = −1, ρ = [0.85, 0.75]; ε = 0.2, ε_high = 0.28.
    # Â > 0: 1.25 kept (grad −1.25), 1.3 → 1.28 (grad 0); symmetric ε would clip 1.25 too.
    # Â < 0: L = −min(−ρ, −clip(ρ)) = max(ρ, clip(ρ)): 0.85 kept (grad +0.85), 0.75 → 0.8 (grad 0).
    # constant_norm, n = 2, L_max = 2: Σ M·L = −1.25 − 1.28 + 0.85 + 0.8 = −0.88 → −0.88 / 4.
    norm = Normalizers(num_sequences=2, num_tokens=4, max_length=2)
    log_ratio = [[math.log(1.25), math.log(1.3)], [math.log(0.85), math.log(0.75)]]
    inputs, logp = make_inputs(log_ratio, [[-1.0] * 2] * 2, [1.0, -1.0], [[1.0] * 2] * 2, norm)
    loss, grad, metrics = loss_and_grad(DrGRPO(epsilon=0.2, epsilon_high=0.28), inputs, logp)
    assert loss.item() == pytest.approx(-0.88 / 4)
    torch.testing.assert_close(grad, t([[-1.25 / 4, 0.0], [0.85 / 4, 0.0]]))
    assert metrics["clip_frac_high"].item() == pytest.approx(0.25)
    assert metrics["clip_frac_low"].item() == pytest.approx(0.25)
    inputs, logp = make_inputs(log_ratio, [[-1.0] * 2] * 2, [1.0, -1.0], [[1.0] * 2] * 2, norm)
    _, grad_sym, _ = loss_and_grad(DrGRPO(epsilon=0.2), inputs, logp)
    torch.testing.assert_close(grad_sym, t([[0.0, 0.0], [0.85 / 4, 0.0]]))


# --------------------------------------------------------------------------------------- GSPO


def test_gspo_hand_values():
    # ε_l = ε_r = 0.2 for readable numbers.
    # Row 0: Â = −1, log ρ = [0.1, −0.3] → s = exp(−0.1) = 0.904837 ∈ [0.8, 1.2]:
    #        L = −min(−s, −clip(s)) = s; ∂L/∂logp_t = −Â s/|o| = s/2 per token.
    # Row 1: Â = +1, log ρ = [0.4, 0.4, pad] → s = e^0.4 = 1.4918 > 1.2: L = −1.2, gradient 0.
    # n = 2: loss = (0.904837 − 1.2)/2; grads row 0: s/2/2.
    norm = Normalizers(num_sequences=2, num_tokens=4, max_length=3)
    log_ratio = [[0.1, -0.3, 0.0], [0.4, 0.4, 7.0]]
    inputs, logp = make_inputs(log_ratio, [[-1.0] * 3] * 2, [-1.0, 1.0], [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]], norm)
    loss, grad, metrics = loss_and_grad(GSPO(epsilon_low=0.2, epsilon_high=0.2), inputs, logp)
    s = math.exp(-0.1)
    assert loss.item() == pytest.approx((s - 1.2) / 2)
    torch.testing.assert_close(grad, t([[s / 4, s / 4, 0.0], [0.0, 0.0, 0.0]]))
    # row 1's two loss tokens are clipped high: 2/N = 0.5; one of the n = 2 sequences
    assert metrics["clip_frac_high"].item() == pytest.approx(0.5)
    assert metrics["clip_frac_low"].item() == 0.0
    assert metrics["clip_frac_high_seq"].item() == pytest.approx(0.5)
    assert metrics["clip_frac_low_seq"].item() == 0.0


def test_gspo_token_mean_and_sequence_metrics():
    # Three rows, ε = 0.2: row 0 Â = −1, s = e^−0.3 = 0.741 < 0.8 (clipped low, 1 token);
    # row 1 Â = −1, log ρ = [−0.1, −0.1, −0.1] → s = e^−0.1 (kept, 3 tokens); row 2 Â = +2, s = 1 (kept, 2 tokens).
    # token_mean over N = 6: L_t = s_i·(−Â) per token unless clipped (then 0.8·(−Â) = 0.8):
    #   Σ = 0.8 + 3 e^−0.1 − 2·2·1 → /6; gradient per unclipped token −Â s / N.
    norm = Normalizers(num_sequences=3, num_tokens=6, max_length=3)
    log_ratio = [[-0.3, 0.0, 0.0], [-0.1] * 3, [0.0, 0.0, 0.0]]
    mask = [[1.0, 0, 0], [1.0] * 3, [1.0, 1.0, 0]]
    inputs, logp = make_inputs(log_ratio, [[-1.0] * 3] * 3, [-1.0, -1.0, 2.0], mask, norm)
    loss, grad, metrics = loss_and_grad(GSPO(0.2, 0.2, aggregation="token_mean"), inputs, logp)
    s1 = math.exp(-0.1)
    assert loss.item() == pytest.approx((0.8 + 3 * s1 - 4) / 6)
    torch.testing.assert_close(grad, t([[0.0, 0, 0], [s1 / 6] * 3, [-2 / 6, -2 / 6, 0]]))
    assert metrics["clip_frac_low"].item() == pytest.approx(1 / 6)  # tokens
    assert metrics["clip_frac_low_seq"].item() == pytest.approx(1 / 3)  # sequences
    assert metrics["clip_frac_high_seq"].item() == 0.0


def test_gspo_ratio_weighted_kl_uses_the_sequence_ratio_with_its_gradient():
    # One row of two tokens, Â = 0, log ρ = [0.2, 0.4] → s = e^0.3; δ = ref − logp = [ln 2, 0] → k3 = [1 − ln 2, 0].
    # seq_mean_token_mean: loss = β s (k3_0 + k3_1)/2. d/dlogp_t: β [∂s/∂logp_t · Σk3/2 + s ∂k3_t/∂logp_t / 2]
    # with ∂s/∂logp_t = s/2 and ∂k3/∂logp = 1 − e^δ = [−1, 0].
    beta, s = 0.1, math.exp(0.3)
    norm = Normalizers(num_sequences=1, num_tokens=2, max_length=2)
    ref = [[-1.0 + math.log(2.0), -1.0]]
    inputs, logp = make_inputs([[0.2, 0.4]], [[-1.0, -1.0]], [0.0], [[1.0, 1.0]], norm, ref_logp=ref)
    loss, grad, metrics = loss_and_grad(GSPO(beta=beta, kl_ratio_weighted=True), inputs, logp)
    k = 1 - math.log(2.0)
    assert loss.item() == pytest.approx(beta * s * k / 2)
    torch.testing.assert_close(grad, t([[beta * (s / 2 * k / 2 - s / 2), beta * (s / 2 * k / 2)]]))
    assert metrics["kl"].item() == pytest.approx(s * k / 2)


def test_gspo_gradient_is_sequence_level():
    # Straight-through form: ∇_{logp_t} of the loss equals that of −s_i Â_i with
    # s_i = exp(mean_t(logp − old)) computed directly (unclipped regime: wide ε).
    logp, log_ratio, ref, adv, mask, norm = random_batch(seed=4, spread=0.05)
    inputs, leaf = build(logp, log_ratio, ref, adv, mask, norm)
    loss, grad, _ = loss_and_grad(GSPO(epsilon_low=0.9, epsilon_high=10.0), inputs, leaf)
    leaf2 = logp.clone().requires_grad_(True)
    lengths = mask.sum(1).clamp(min=1)
    s = torch.exp(((leaf2 - (logp - log_ratio)) * mask).sum(1) / lengths)
    direct = -(s * adv * (mask.sum(1) > 0)).sum() / norm.num_sequences
    (direct_grad,) = torch.autograd.grad(direct, leaf2)
    torch.testing.assert_close(loss, direct.detach())
    torch.testing.assert_close(grad, direct_grad)


def test_gspo_one_token_equals_grpo():
    # Oracle: with one-token completions s_i = ρ_i, so GSPO is token-level GRPO with the same ε.
    log_ratio = t([[2e-4], [-2e-4], [1e-3], [-1e-3], [5e-4], [-5e-4]])
    adv = t([1.0, -1.0, 1.0, -1.0, -0.5, 0.5])
    logp = t([[-1.0], [-0.5], [-2.0], [-0.1], [-0.7], [-1.5]])
    mask = torch.ones(6, 1, dtype=F64)
    ref = logp.clone()
    norm = Normalizers(num_sequences=6, num_tokens=6, max_length=1)
    inputs, leaf = build(logp, log_ratio, ref, adv, mask, norm)
    gspo = loss_and_grad(GSPO(), inputs, leaf)
    inputs, leaf = build(logp, log_ratio, ref, adv, mask, norm)
    grpo = loss_and_grad(GRPO(epsilon_low=3e-4, epsilon_high=4e-4, beta=0.0), inputs, leaf)
    torch.testing.assert_close(gspo[0], grpo[0])
    torch.testing.assert_close(gspo[1], grpo[1])
    # rows 2 (ρ = e^1e-3 > 1 + 4e-4, Â > 0) and 3 (ρ < 1 − 3e-4, Â < 0) are clipped, with zero gradient
    assert gspo[1][2].item() == 0.0 and gspo[1][3].item() == 0.0
    assert gspo[2]["clip_frac_high"].item() == pytest.approx(1 / 6)
    assert gspo[2]["clip_frac_low"].item() == pytest.approx(1 / 6)


# --------------------------------------------------------------------------------------- CISPO


def test_cispo_hand_values():
    # L_t = −stopgrad(min(ρ, 5)) Â logp_t, token_mean over N = 3.
    # Row 0: Â = 1, ρ = [1, 6] → w = [1, 5], logp = [−1, −2]
    # Row 1: Â = −0.5, ρ = [2, pad] → w = 2, logp = −0.5
    # Σ = −(1·1·(−1) + 5·1·(−2) + 2·(−0.5)·(−0.5)) = −(−1 − 10 + 0.5) = 10.5 → loss = 3.5
    # grads −wÂ/N: [−1/3, −5/3], [1/3, 0] — the capped token keeps its gradient (w = 5), unlike PPO.
    norm = Normalizers(num_sequences=2, num_tokens=3, max_length=2)
    log_ratio = [[0.0, math.log(6.0)], [math.log(2.0), 3.0]]
    inputs, logp = make_inputs(log_ratio, [[-1.0, -2.0], [-0.5, -3.0]], [1.0, -0.5], [[1.0, 1.0], [1.0, 0.0]], norm)
    loss, grad, metrics = loss_and_grad(CISPO(), inputs, logp)
    assert loss.item() == pytest.approx(3.5)
    torch.testing.assert_close(grad, t([[-1 / 3, -5 / 3], [1 / 3, 0.0]]))
    assert metrics["clip_frac"].item() == pytest.approx(1 / 3)
    assert metrics["clip_frac_high"].item() == pytest.approx(1 / 3)  # the capped token has Â > 0


def test_cispo_two_sided_clip_and_both_clip_fractions():
    # verl's two-sided clip, w = clip(ρ, 0.8, 1.2), token_mean over N = 4:
    # row 0 Â = −1, ρ = [1.5, 0.5] → w = [1.2, 0.8], logp = [−1, −2]: L = −wÂ logp = [−1.2, −1.6]
    # row 1 Â = +2, ρ = [1.1, 0.6] → w = [1.1, 0.8], logp = [−0.5, −1]: L = [1.1, 1.6]
    # loss = (−1.2 − 1.6 + 1.1 + 1.6)/4 = −0.025; grads −wÂ/N = [0.3, 0.2], [−0.55, −0.4] — clipped
    # weights still carry gradient (CISPO's point).
    norm = Normalizers(num_sequences=2, num_tokens=4, max_length=2)
    log_ratio = [[math.log(1.5), math.log(0.5)], [math.log(1.1), math.log(0.6)]]
    inputs, logp = make_inputs(log_ratio, [[-1.0, -2.0], [-0.5, -1.0]], [-1.0, 2.0], [[1.0] * 2] * 2, norm)
    loss, grad, metrics = loss_and_grad(CISPO(epsilon_min=0.8, epsilon_max=1.2), inputs, logp)
    assert loss.item() == pytest.approx(-0.025)
    torch.testing.assert_close(grad, t([[0.3, 0.2], [-0.55, -0.4]]))
    # verl's pg_clipfrac: any clipped weight, any Â (3 of 4); TRL's cispo_clip_ratio: ρ > ε_max with Â > 0 (none)
    assert metrics["clip_frac"].item() == pytest.approx(0.75)
    assert metrics["clip_frac_high"].item() == 0.0


# --------------------------------------------------------------------------------------- GMPO


def test_gmpo_hand_values():
    # ε = 0.4 in log space.
    # Row 0: Â = +1, ℓ = [0.6, −0.6, 0.2] → min(ℓ, clip(ℓ)) = [0.4, −0.6, 0.2] (only the top is capped)
    #        mean = 0 → exp 0 = 1 → L_0 = −1; grads of unclipped tokens: −e^0·Â/3 = −1/3; token 0: 0.
    # Row 1: Â = −2, ℓ = [0.6, −0.6, pad] → max(ℓ, clip(ℓ)) = [0.6, −0.4] (only the bottom is capped)
    #        mean = 0.1 → L_1 = −e^0.1·(−2) = 2e^0.1; grad token 0: −e^0.1·(−2)/2 = e^0.1; token 1: 0.
    # n = 2: loss = (−1 + 2e^0.1)/2, grads ÷ 2. Clipped tokens: 2 of N = 5.
    norm = Normalizers(num_sequences=2, num_tokens=5, max_length=3)
    log_ratio = [[0.6, -0.6, 0.2], [0.6, -0.6, 5.0]]
    inputs, logp = make_inputs(log_ratio, [[-1.0] * 3] * 2, [1.0, -2.0], [[1.0] * 3, [1.0, 1.0, 0.0]], norm)
    loss, grad, metrics = loss_and_grad(GMPO(), inputs, logp)
    e = math.exp(0.1)
    assert loss.item() == pytest.approx((-1 + 2 * e) / 2)
    torch.testing.assert_close(grad, t([[0.0, -1 / 6, -1 / 6], [e / 2, 0.0, 0.0]]))
    assert metrics["clip_frac"].item() == pytest.approx(0.4)
    # verl's definitions: any log-ratio outside [−0.4, 0.4], split by the advantage's sign: 2 + 2 of 5
    assert metrics["out_of_range_frac_pos"].item() == pytest.approx(0.4)
    assert metrics["out_of_range_frac_neg"].item() == pytest.approx(0.4)


def test_gmpo_on_policy_gradient_is_reinforce():
    # ρ ≡ 1: the geometric mean is 1 and ∇ = −Â/|o| ∇logp per token: RGRA's (β = 0) gradient.
    logp, _, ref, adv, mask, norm = random_batch(seed=5)
    zero = torch.zeros_like(logp)
    inputs, leaf = build(logp, zero, ref, adv, mask, norm)
    gmpo = loss_and_grad(GMPO(), inputs, leaf)
    inputs, leaf = build(logp, zero, ref, adv, mask, norm)
    rgra = loss_and_grad(RGRA(beta=0.0), inputs, leaf)
    torch.testing.assert_close(gmpo[1], rgra[1])
    nonempty = mask.sum(1) > 0
    assert gmpo[0].item() == pytest.approx(-(adv * nonempty).sum().item() / norm.num_sequences)


# --------------------------------------------------------------------------------------- all objectives


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(lambda **k: GRPO(**k), id="GRPO"),
        pytest.param(lambda **k: DAPO(**k), id="DAPO"),
        pytest.param(lambda **k: DrGRPO(**k), id="DrGRPO"),
        pytest.param(lambda **k: ABCGRPO(**k), id="ABCGRPO"),
        pytest.param(lambda **k: CISPO(**k), id="CISPO"),
        pytest.param(lambda **k: GSPO(**k), id="GSPO"),
        pytest.param(lambda **k: GMPO(**k), id="GMPO"),
    ],
)
def test_ratio_weighted_kl_on_every_objective(factory):
    # One token, Â = 0 (every surrogate is 0), ρ = 2, δ = ref − logp = ln 2, β = 0.1, one sequence so
    # every aggregation is the token itself (constant_norm: L_max = 1). ρ k3 has value 2 (1 − ln 2) and,
    # ρ keeping its gradient, d/dlogp = ρ k3 + ρ (1 − e^δ) = −2 ln 2.
    norm = Normalizers(num_sequences=1, num_tokens=1, max_length=1)
    inputs, logp = make_inputs([[math.log(2.0)]], [[-1.0]], [0.0], [[1.0]], norm, ref_logp=[[-1.0 + math.log(2.0)]])
    loss, grad, metrics = loss_and_grad(factory(beta=0.1, kl_ratio_weighted=True), inputs, logp)
    assert loss.item() == pytest.approx(0.2 * (1 - math.log(2.0)))
    assert grad.item() == pytest.approx(-0.2 * math.log(2.0))
    assert metrics["kl"].item() == pytest.approx(2 * (1 - math.log(2.0)))


def test_rgra_ratio_weighted_kl_is_on_policy():
    # RGRA ignores logp_old: its weight is exp(logp − stopgrad logp) (value 1, gradient ∇logp), so with
    # ρ = 2 in the inputs the value is k3 = 1 − ln 2 and the gradient k3 + (1 − e^δ) = −ln 2 (× β).
    norm = Normalizers(num_sequences=1, num_tokens=1, max_length=1)
    inputs, logp = make_inputs([[math.log(2.0)]], [[-1.0]], [0.0], [[1.0]], norm, ref_logp=[[-1.0 + math.log(2.0)]])
    loss, grad, _ = loss_and_grad(RGRA(beta=0.1, kl_ratio_weighted=True), inputs, logp)
    assert loss.item() == pytest.approx(0.1 * (1 - math.log(2.0)))
    assert grad.item() == pytest.approx(-0.1 * math.log(2.0))


ALL = [
    pytest.param(lambda: GRPO(beta=0.04), id="GRPO"),
    pytest.param(lambda: GRPO(beta=0.04, kl_ratio_weighted=True, entropy_bonus=EntropyBonus(coef=0.01)), id="GRPO-ratio-kl-entropy"),
    pytest.param(lambda: GRPO(beta=0.04, aggregation="token_sum", kl_estimator="k3+"), id="GRPO-token_sum-k3+"),
    pytest.param(lambda: GSPO(0.1, 0.1, beta=0.01, kl_ratio_weighted=True, aggregation="token_mean"), id="GSPO-ratio-kl"),
    pytest.param(lambda: CISPO(epsilon_min=0.9, epsilon_max=1.1, entropy_bonus=EntropyBonus(coef=0.01, aggregation=None)), id="CISPO-two-sided-entropy"),
    pytest.param(lambda: GMPO(beta=0.01, kl_ratio_weighted=True, entropy_bonus=EntropyBonus(coef=0.02)), id="GMPO-ratio-kl-entropy"),
    pytest.param(lambda: GTPO(entropy_bonus=EntropyBonus(coef=0.02)), id="GTPO-entropy"),
    pytest.param(lambda: ABCGRPO(beta=0.01, epsilon_2=0.1), id="ABCGRPO"),
    pytest.param(lambda: ABCGRPO(aggregation="token_mean"), id="ABCGRPO-token_mean"),
    pytest.param(lambda: DAPO(), id="DAPO"),
    pytest.param(lambda: DrGRPO(), id="DrGRPO"),
    pytest.param(lambda: GSPO(epsilon_low=0.1, epsilon_high=0.1, beta=0.01), id="GSPO"),
    pytest.param(lambda: CISPO(epsilon_max=1.2, beta=0.01), id="CISPO"),
    pytest.param(lambda: GMPO(beta=0.01), id="GMPO"),
    pytest.param(lambda: RGRA(), id="RGRA"),
    pytest.param(lambda: GTPO(), id="GTPO"),
    pytest.param(lambda: GTPO(completion_reduction="sum"), id="GTPO-sum"),
]


@pytest.mark.parametrize("factory", ALL)
def test_micro_batch_additivity(factory):
    # Splitting rows into two micro-batches with the same global normalisers gives the same loss,
    # gradient and (summed) metrics as one pass.
    objective = factory()
    logp, log_ratio, ref, adv, mask, norm = random_batch(seed=7, spread=0.3)
    gen = torch.Generator().manual_seed(8)
    entropy = torch.rand(logp.shape, generator=gen, dtype=F64)
    ids = torch.randint(0, 3, logp.shape, generator=gen)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    weights = objective.rollout_token_weights(ids, mask, adv, groups)
    extra = {"entropy": entropy, "completion_ids": ids, "group_ids": groups}
    if weights is not None:
        extra["token_weights"] = weights
    inputs, leaf = build(logp, log_ratio, ref, adv, mask, norm, **extra)
    full, full_grad, full_metrics = loss_and_grad(objective, inputs, leaf)
    leaf = logp.clone().requires_grad_(True)
    parts = []
    for rows in (slice(0, 2), slice(2, 6)):
        inputs = ObjectiveInputs(
            logp=leaf[rows], old_logp=(logp - log_ratio)[rows], advantages=adv[rows], mask=mask[rows],
            normalizers=norm, ref_logp=ref[rows], **{k: v[rows] for k, v in extra.items()},
        )
        parts.append(objective(inputs))
    split = parts[0][0] + parts[1][0]
    (split_grad,) = torch.autograd.grad(split, leaf)
    torch.testing.assert_close(split.detach(), full)
    torch.testing.assert_close(split_grad, full_grad)
    assert set(full_metrics) == set(parts[0][1])
    for key, value in full_metrics.items():
        torch.testing.assert_close(parts[0][1][key] + parts[1][1][key], value)


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: ABCGRPO(epsilon_1=-0.1), "-0.1"),
        (lambda: ABCGRPO(epsilon_4=1.5), "1.5"),
        (lambda: ABCGRPO(beta=-1.0), "-1.0"),
        (lambda: DAPO(epsilon_high=-0.28), "-0.28"),
        (lambda: DrGRPO(epsilon=-0.2), "-0.2"),
        (lambda: GSPO(epsilon_low=1.0), "1.0"),
        (lambda: GSPO(epsilon_high=-4e-4), "-0.0004"),
        (lambda: CISPO(epsilon_max=0.0), "0.0"),
        (lambda: CISPO(epsilon_min=6.0), "6.0"),
        (lambda: DrGRPO(epsilon_high=-0.1), "-0.1"),
        (lambda: GSPO(aggregation="mean"), "'mean'"),
        (lambda: GMPO(kl_estimator="k5"), "'k5'"),
        (lambda: GMPO(epsilon_low=-0.4), "-0.4"),
        (lambda: RGRA(beta=-0.005), "-0.005"),
        (lambda: GTPO(w_pos=-2.0), "-2.0"),
        (lambda: GTPO(entropy_threshold=-0.7), "-0.7"),
        (lambda: GTPO(completion_reduction="max"), "'max'"),
    ],
)
def test_rejects_bad_hyperparameters(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.parametrize("cls", [ABCGRPO, GSPO, CISPO, GMPO, RGRA, DAPO, DrGRPO])
def test_beta_requires_reference(cls):
    logp, log_ratio, ref, adv, mask, norm = random_batch(seed=9)
    objective = cls(beta=0.1)
    assert objective.needs_reference
    inputs = ObjectiveInputs(logp=logp, old_logp=logp - log_ratio, advantages=adv, mask=mask, normalizers=norm)
    with pytest.raises(ValueError, match="ref_logp"):
        objective(inputs)


# --------------------------------------------------------------------------------------- shared options, every objective

KL_OBJECTIVES = [
    # (factory, the aggregation its KL term uses)
    pytest.param(lambda **k: GRPO(**k), "seq_mean_token_mean", id="GRPO"),
    pytest.param(lambda **k: DAPO(**k), "token_mean", id="DAPO"),
    pytest.param(lambda **k: DrGRPO(**k), "constant_norm", id="DrGRPO"),
    pytest.param(lambda **k: ABCGRPO(aggregation="seq_mean_token_sum", **k), "seq_mean_token_sum", id="ABCGRPO"),
    pytest.param(lambda **k: CISPO(**k), "token_mean", id="CISPO"),
    pytest.param(lambda **k: GSPO(aggregation="token_sum", **k), "token_sum", id="GSPO"),
    pytest.param(lambda **k: GMPO(**k), "seq_mean_token_mean", id="GMPO"),
    pytest.param(lambda **k: RGRA(**k), "seq_mean_token_mean", id="RGRA"),
]


@pytest.mark.parametrize("factory, aggregation", KL_OBJECTIVES)
@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_kl_term_of_every_objective(factory, aggregation, estimator):
    # On-policy with Â = 0 every surrogate and its gradient vanish, so the loss is β · aggregate(kl)
    # with the objective's aggregation, and the gradient β · dkl/dlogp times that aggregation's weights.
    logp, _, ref, _, mask, norm = random_batch(seed=11)
    adv = torch.zeros(logp.shape[0], dtype=F64)
    inputs, leaf = build(logp, torch.zeros_like(logp), ref, adv, mask, norm)
    loss, grad, metrics = loss_and_grad(factory(beta=0.3, kl_estimator=estimator), inputs, leaf)
    delta = ref - logp
    kl, dkl = (-delta, torch.ones_like(delta)) if estimator == "k1" else (delta.exp() - delta - 1, 1 - delta.exp())
    lengths = mask.sum(1, keepdim=True).clamp(min=1)
    weights = {
        "token_mean": mask / norm.num_tokens,
        "seq_mean_token_mean": mask / lengths / norm.num_sequences,
        "seq_mean_token_sum": mask / norm.num_sequences,
        "constant_norm": mask / (norm.num_sequences * norm.max_length),
        "token_sum": mask,
    }[aggregation]
    assert loss.item() == pytest.approx(0.3 * (kl * weights).sum().item(), abs=1e-12)
    torch.testing.assert_close(grad, 0.3 * dkl * weights)
    assert metrics["kl"].item() == pytest.approx(((kl * mask).sum() / norm.num_tokens).item())


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(lambda **k: GRPO(beta=0.05, **k), id="GRPO"),
        pytest.param(lambda **k: DAPO(beta=0.05, **k), id="DAPO"),
        pytest.param(lambda **k: DrGRPO(beta=0.05, **k), id="DrGRPO"),
        pytest.param(lambda **k: ABCGRPO(beta=0.05, **k), id="ABCGRPO"),
        pytest.param(lambda **k: CISPO(beta=0.05, **k), id="CISPO"),
        pytest.param(lambda **k: GSPO(0.1, 0.1, beta=0.05, **k), id="GSPO"),
        pytest.param(lambda **k: RGRA(beta=0.05, **k), id="RGRA"),
    ],
)
def test_loss_scale_factor_replaces_max_length_in_every_term(factory):
    # constant_norm with K = 7 on a batch whose budget is 5 equals constant_norm on a budget of 7:
    # surrogate, KL and entropy bonus alike (value and gradient), and differs from budget 5.
    logp, log_ratio, ref, adv, mask, norm = random_batch(seed=12, spread=0.4)
    entropy = torch.rand(logp.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    bonus = EntropyBonus(coef=0.1, aggregation=None)
    budget7 = Normalizers(num_sequences=norm.num_sequences, num_tokens=norm.num_tokens, max_length=7.0)
    results = []
    for objective, normalizers in (
        (factory(aggregation="constant_norm", loss_scale_factor=7.0, entropy_bonus=bonus), norm),
        (factory(aggregation="constant_norm", entropy_bonus=bonus), budget7),
        (factory(aggregation="constant_norm", entropy_bonus=bonus), norm),
    ):
        inputs, leaf = build(logp, log_ratio, ref, adv, mask, normalizers, entropy=entropy)
        results.append(loss_and_grad(objective, inputs, leaf))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    assert results[0][2]["entropy_loss"] == pytest.approx(results[1][2]["entropy_loss"])
    assert (results[0][1] - results[2][1]).abs().max() > 1e-6



def test_fraction_helpers_count_loss_tokens_and_nonempty_sequences():
    # Shares of a step's fraction: masked tokens over the step's N, non-empty sequences over its n.
    mask = t([[1, 1, 0], [0, 0, 0], [1, 0, 0]])
    norm = Normalizers(num_sequences=4, num_tokens=6, max_length=3)
    condition = torch.tensor([[True, False, True], [True, True, True], [True, True, True]])
    assert token_fraction(condition, mask, norm).item() == pytest.approx(2 / 6)  # padding never counts
    # the empty row 1 never counts, whatever its condition
    assert sequence_fraction(torch.tensor([True, True, False]), mask, norm).item() == pytest.approx(1 / 4)
    assert sequence_fraction(torch.tensor([False, True, True]), mask, norm).item() == pytest.approx(1 / 4)


def test_loss_scale_factor_below_one_is_a_constant_like_any_other():
    # K = 0.5: constant_norm is Σ M·L / (n · K); K must be > 0, and 0 is refused by name.
    logp, log_ratio, ref, adv, mask, norm = random_batch(seed=3)
    half, _ = build(logp, log_ratio, ref, adv, mask, norm)
    loss_half, _ = GRPO(beta=0.0, aggregation="constant_norm", loss_scale_factor=0.5)(half)
    one, _ = build(logp, log_ratio, ref, adv, mask, norm)
    loss_one, _ = GRPO(beta=0.0, aggregation="constant_norm", loss_scale_factor=1.0)(one)
    torch.testing.assert_close(loss_half, 2 * loss_one)
    with pytest.raises(ValueError, match="loss_scale_factor must be > 0.*got 0"):
        GRPO(loss_scale_factor=0)
