"""Helpers that build objective inputs from hand-written values (float64, logp a leaf with its gradient)."""

from __future__ import annotations

import torch

from lightning_grpo.objectives import Normalizers, Objective, ObjectiveInputs

F64 = torch.float64


def t(values):
    return torch.tensor(values, dtype=F64)


def make_inputs(log_ratio, logp, adv, mask, norm, ref_logp=None, **extra):
    """logp is a leaf with grad; old_logp = logp − log_ratio, so ρ = exp(log_ratio)."""
    logp = t(logp).requires_grad_(True)
    inputs = ObjectiveInputs(
        logp=logp,
        old_logp=logp.detach() - t(log_ratio),
        advantages=t(adv),
        mask=t(mask),
        normalizers=norm,
        ref_logp=None if ref_logp is None else t(ref_logp),
        **extra,
    )
    return inputs, logp


def loss_and_grad(objective: Objective, inputs: ObjectiveInputs, logp: torch.Tensor):
    loss, metrics = objective(inputs)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss.detach(), grad, metrics


def random_batch(seed=0, b=6, length=5, spread=0.5, positive=None):
    gen = torch.Generator().manual_seed(seed)
    logp = -torch.rand(b, length, generator=gen, dtype=F64) * 3
    log_ratio = spread * torch.randn(b, length, generator=gen, dtype=F64)
    ref = logp + 0.3 * torch.randn(b, length, generator=gen, dtype=F64)
    adv = torch.randn(b, generator=gen, dtype=F64)
    if positive is not None:
        adv = adv.abs() if positive else -adv.abs()
    lengths = torch.tensor([length, 3, 1, 4, 0, 2][:b])
    mask = (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)).to(F64)
    norm = Normalizers(num_sequences=float((lengths > 0).sum()), num_tokens=float(mask.sum()), max_length=float(length))
    return logp, log_ratio, ref, adv, mask, norm


def build(logp, log_ratio, ref, adv, mask, norm, rows=slice(None), **extra):
    leaf = logp.clone().requires_grad_(True)
    inputs = ObjectiveInputs(
        logp=leaf[rows], old_logp=(logp - log_ratio)[rows], advantages=adv[rows], mask=mask[rows],
        normalizers=norm, ref_logp=ref[rows], **{k: v[rows] for k, v in extra.items()},
    )
    return inputs, leaf
