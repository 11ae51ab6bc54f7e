"""DAPO's dynamic sampling (arXiv 2503.14476, docs/algorithms.md §7): train only on informative groups.

A group whose completions all have the same outcome (all right or all wrong; without a correctness
reward, all the same total reward) has zero advantage under group normalisation and carries no
gradient. :class:`DynamicSampling` drops such groups and samples further prompt batches until the
rollout holds as many informative groups as it started with, for at most ``max_extra_rounds`` extra
rounds; then the batch is completed with dropped groups that carry no loss (``Rollout.valid``).

Logged: ``sampling/kept_group_frac`` (informative groups / wanted), ``sampling/extra_rounds``,
``sampling/informative_frac_first_round`` and ``sampling/first_round_accuracy`` (the policy's
accuracy as sampled: the kept groups are mixed ones only, so their accuracy is not the policy's).
Every rank samples the same number of rounds (generation may hold collectives), so the decision to
go on is taken over all ranks.
"""

from __future__ import annotations

from typing import Callable

import torch

from lightning_grpo.rollout import Rollout, gather_groups


def informative_groups(rollout: Rollout) -> list[int]:
    """Groups whose outcomes differ (correctness if known, else total reward)."""
    outcome = (rollout.correct if rollout.correct is not None else rollout.rewards).float()
    grouped = outcome.view(-1, rollout.group_size)  # [P, G]
    mixed = grouped.max(dim=1).values > grouped.min(dim=1).values  # [P]
    return mixed.nonzero().flatten().tolist()


class DynamicSampling:
    """Refills a rollout with informative groups from extra sampling rounds (see the module docstring).

    Args:
        max_extra_rounds: bound on the extra sampling rounds per rollout (DAPO samples until the
            batch is full; a bound keeps a step's cost finite when nearly every group is decided).
    """

    def __init__(self, max_extra_rounds: int = 4) -> None:
        if max_extra_rounds < 0:
            raise ValueError(f"max_extra_rounds must be >= 0, got {max_extra_rounds}")
        self.max_extra_rounds = max_extra_rounds

    def fill(
        self,
        first: Rollout,
        sample_more: Callable[[], Rollout],
        any_rank_short: Callable[[bool], bool],
        pad_id: int,
    ) -> Rollout:
        """``first`` with its uninformative groups replaced by informative ones from ``sample_more()``.

        ``any_rank_short(short)`` is True when this rank or any other still lacks groups.
        """
        wanted = first.num_groups
        rollouts = [first]
        picks = [(0, g) for g in informative_groups(first)]
        first_kept = len(picks)
        rounds = 0
        while rounds < self.max_extra_rounds and any_rank_short(len(picks) < wanted):
            rollouts.append(sample_more())
            picks += [(len(rollouts) - 1, g) for g in informative_groups(rollouts[-1])]
            rounds += 1
        kept = min(len(picks), wanted)
        picks = picks[:wanted]
        fillers = [(0, g) for g in range(wanted) if (0, g) not in picks][: wanted - kept]
        rollout = gather_groups(rollouts, picks + fillers, pad_id)
        device = rollout.input_ids.device
        rollout.valid = torch.arange(wanted * rollout.group_size, device=device) < kept * rollout.group_size  # [N]
        rollout.stats.update(
            {
                "sampling/kept_group_frac": kept / wanted,
                "sampling/informative_frac_first_round": first_kept / wanted,
                "sampling/extra_rounds": float(rounds),
            }
        )
        if first.correct is not None:  # the kept groups are mixed ones only: not the policy's accuracy
            rollout.stats["sampling/first_round_accuracy"] = float(first.correct.float().mean())
        return rollout
