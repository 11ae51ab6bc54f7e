"""Evaluation metrics: unbiased pass@k, majority vote (maj@k), and a rank-safe accumulator.

pass@k (Chen et al., 2021, "Evaluating Large Language Models Trained on Code", eq. 1): with n
samples of which c are correct, the probability that a random subset of k samples holds at least one
correct one is

    pass@k = 1 − C(n − c, k) / C(n, k) = 1 − Π_{i = n−c+1}^{n} (1 − k / i)      (n − c ≥ k; else 1)

The product form never forms a binomial coefficient, so it neither overflows nor loses precision for
large n. The benchmark value is the mean of the per-prompt estimates over prompts.

maj@k: the most common extracted answer among the first k samples (answers that could not be
extracted, ``None``, do not vote); the prompt counts as solved when that answer is correct. Ties are
broken by first occurrence, so the result is deterministic for a given sample order.

:class:`EvalAccumulator` is a torchmetrics ``Metric`` that keeps one record per prompt (keyed by a
stable integer id) in ``cat`` states. ``compute()`` gathers the records of every rank, keeps each
prompt id once (Lightning's ``DistributedSampler`` pads the last batch by repeating prompts, so a
prompt may be evaluated twice, on one rank or on two), and only then sums numerators and counts.
Nothing is ever a mean of per-rank means.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one prompt: n samples, c of them correct (1 − C(n−c, k) / C(n, k))."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def majority_answer(answers: Sequence[str | None]) -> int | None:
    """Index of the first occurrence of the most common non-None answer (None if none was extracted)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(i for i, a in enumerate(answers) if a is not None and counts[a] == best)


def majority_vote(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """maj@k over the given samples: is the most common extracted answer correct?

    ``answers[i]`` is sample i's extracted (normalised) answer or None; ``correct[i]`` its verdict.
    None answers do not vote; ties go to the answer seen first; no answer at all is not correct.
    """
    if len(answers) != len(correct):
        raise ValueError(f"{len(answers)} answers but {len(correct)} verdicts")
    index = majority_answer(answers)
    return bool(correct[index]) if index is not None else False


def stable_prompt_id(prompt_id: str | int) -> int:
    """A process-independent non-negative int64 for a prompt id (ints pass through; strings hashed).

    Python's ``hash`` is salted per process, so it cannot key records that are compared across ranks.
    """
    if isinstance(prompt_id, int):
        if prompt_id < 0:
            raise ValueError(f"integer prompt ids must be >= 0, got {prompt_id}")
        return prompt_id
    digest = hashlib.blake2b(str(prompt_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


# Columns of a per-prompt record (float64: integers stay exact below 2**53).
_N, _C, _LEN_SUM, _TRUNC, _GREEDY_CORRECT, _GREEDY_LEN, _GREEDY_TRUNC = range(7)
_FIXED_COLUMNS = 7
_MISSING = -1.0  # greedy fields of a prompt evaluated without greedy decoding; maj@k when n < k


class EvalAccumulator(Metric):
    """Accuracy (greedy), pass@k, maj@k, mean length and truncated fraction over held-out prompts.

    Call :meth:`update` once per evaluation batch with this rank's prompts; :meth:`compute` returns
    a dict over all ranks with each prompt id counted once (first record in rank order wins):

    - ``accuracy``: greedy accuracy (only if greedy verdicts were given);
    - ``pass@k`` for each k in ``ks`` (over prompts with at least k samples);
    - ``maj@k`` for each k in ``ks`` (only if answers were given; over prompts with >= k samples);
    - ``length_mean`` / ``truncated_frac``: over all sampled completions (token-weighted by sample);
    - ``greedy_length_mean`` / ``greedy_truncated_frac``: over greedy completions;
    - ``num_prompts``: distinct prompts counted.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, ks: Sequence[int] = (1, 4, 8), **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        ks = tuple(int(k) for k in ks)
        if not ks or min(ks) < 1 or len(set(ks)) != len(ks):
            raise ValueError(f"ks must be distinct positive integers, got {ks}")
        self.ks = ks
        self.add_state("ids", default=[], dist_reduce_fx="cat")  # [P] int64
        self.add_state("records", default=[], dist_reduce_fx="cat")  # [P, 7 + len(ks)] float64

    def update(
        self,
        prompt_ids: Tensor | Sequence[str | int],  # [P]
        correct: Tensor | None = None,  # [P, n] bool: verdict of each sample
        lengths: Tensor | None = None,  # [P, n] completion lengths in tokens
        truncated: Tensor | None = None,  # [P, n] bool: no EOS within the budget
        answers: Sequence[Sequence[str | None]] | None = None,  # [P][n] extracted answers, for maj@k
        greedy_correct: Tensor | None = None,  # [P] bool
        greedy_lengths: Tensor | None = None,  # [P]
        greedy_truncated: Tensor | None = None,  # [P] bool
    ) -> None:
        """Add this rank's prompts; n (samples per prompt) may be 0 for a greedy-only evaluation."""
        if isinstance(prompt_ids, Tensor):
            ids = prompt_ids.detach().to(device=self.device, dtype=torch.int64).flatten()
        else:
            ids = torch.tensor([stable_prompt_id(p) for p in prompt_ids], dtype=torch.int64, device=self.device)
        p = ids.numel()
        if correct is None:
            correct = torch.zeros(p, 0, dtype=torch.bool)
        correct = correct.detach().to(self.device).bool().reshape(p, -1)  # [P, n]
        n = correct.shape[1]
        lengths = torch.zeros(p, n) if lengths is None else lengths.detach().reshape(p, n)
        truncated = torch.zeros(p, n, dtype=torch.bool) if truncated is None else truncated.detach().reshape(p, n)
        if answers is not None and (len(answers) != p or any(len(a) != n for a in answers)):
            raise ValueError(f"answers must be [P={p}][n={n}]")
        record = torch.full((p, self._width), _MISSING, dtype=torch.float64, device=self.device)
        record[:, _N] = n
        record[:, _C] = correct.sum(1).to(torch.float64)
        record[:, _LEN_SUM] = lengths.to(self.device, torch.float64).sum(1)
        record[:, _TRUNC] = truncated.to(self.device).bool().sum(1).to(torch.float64)
        if greedy_correct is not None:
            record[:, _GREEDY_CORRECT] = greedy_correct.detach().to(self.device).reshape(p).to(torch.float64)
            record[:, _GREEDY_LEN] = (
                0.0 if greedy_lengths is None else greedy_lengths.detach().to(self.device).reshape(p).to(torch.float64)
            )
            record[:, _GREEDY_TRUNC] = (
                0.0
                if greedy_truncated is None
                else greedy_truncated.detach().to(self.device).reshape(p).to(torch.float64)
            )
        if answers is not None:
            verdicts = correct.tolist()
            for j, k in enumerate(self.ks):
                if k <= n:
                    record[:, _FIXED_COLUMNS + j] = torch.tensor(
                        [float(majority_vote(a[:k], v[:k])) for a, v in zip(answers, verdicts)],
                        dtype=torch.float64,
                        device=self.device,
                    )
        self.ids.append(ids)
        self.records.append(record)

    def _sync_dist(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # A rank that saw no prompt would otherwise offer torchmetrics' default empty float32 vector,
        # whose dtype and rank differ from the others' records; offer empty records of the right shape.
        if isinstance(self.ids, list) and not self.ids:
            self.ids = [torch.zeros(0, dtype=torch.int64, device=self.device)]
            self.records = [torch.zeros(0, self._width, dtype=torch.float64, device=self.device)]
        super()._sync_dist(*args, **kwargs)

    @property
    def _width(self) -> int:
        return _FIXED_COLUMNS + len(self.ks)

    def unique_records(self) -> tuple[Tensor, Tensor]:
        """(ids [U], records [U, F]) over all ranks (after sync), the first record of each id kept."""
        if isinstance(self.ids, list) and not self.ids:
            return torch.zeros(0, dtype=torch.int64), torch.zeros(0, self._width, dtype=torch.float64)
        ids = dim_zero_cat(self.ids).to(torch.int64)  # [M]
        records = dim_zero_cat(self.records).reshape(ids.numel(), -1)  # [M, F]
        unique, inverse = torch.unique(ids, return_inverse=True)  # [U], [M]
        order = torch.arange(ids.numel(), device=ids.device)
        first = torch.full((unique.numel(),), ids.numel(), dtype=torch.int64, device=ids.device)
        first = first.scatter_reduce(0, inverse, order, reduce="amin")  # [U] first row of each id
        first = first.sort().values  # keep the gathered (rank) order
        return ids[first], records[first]

    def compute(self) -> dict[str, Tensor]:
        _, rec = self.unique_records()
        out: dict[str, Tensor] = {"num_prompts": torch.tensor(float(rec.shape[0]))}
        if rec.shape[0] == 0:
            return out
        n, c = rec[:, _N], rec[:, _C]
        samples = n.sum()
        if samples > 0:
            out["length_mean"] = rec[:, _LEN_SUM].sum() / samples
            out["truncated_frac"] = rec[:, _TRUNC].sum() / samples
        for j, k in enumerate(self.ks):
            eligible = (n >= k).nonzero().flatten().tolist()
            if eligible:
                values = [pass_at_k(int(n[i]), int(c[i]), k) for i in eligible]
                out[f"pass@{k}"] = torch.tensor(sum(values) / len(values), dtype=torch.float64)
            maj = rec[:, _FIXED_COLUMNS + j]
            voted = maj >= 0
            if voted.any():
                out[f"maj@{k}"] = maj[voted].sum() / voted.sum()
        greedy = rec[:, _GREEDY_CORRECT] >= 0
        if greedy.any():
            count = greedy.sum()
            out["accuracy"] = rec[greedy, _GREEDY_CORRECT].sum() / count
            out["greedy_length_mean"] = rec[greedy, _GREEDY_LEN].sum() / count
            out["greedy_truncated_frac"] = rec[greedy, _GREEDY_TRUNC].sum() / count
        return {key: value.float() for key, value in out.items()}
