"""Samplers: prompts → n completions each with the live policy, behind one interface.

``data.rollout.sampler`` picks one by ``class_path`` (default :class:`FastSampler`; :class:`HFSampler` is
HF ``generate``, the reference for correctness tests). A new backend (an inference engine, say)
subclasses :class:`Sampler` and implements ``generate``; neither the module nor the data module
changes.
"""

from lightning_grpo.sampling.base import Sampler, Sampling, SamplingParams, Samples, completion_mask_from_ids
from lightning_grpo.sampling.distribution import sample_categorical, sampling_scores
from lightning_grpo.sampling.fast import FastSampler
from lightning_grpo.sampling.hf import HFSampler

__all__ = [
    "FastSampler",
    "HFSampler",
    "Sampler",
    "Sampling",
    "SamplingParams",
    "Samples",
    "completion_mask_from_ids",
    "sample_categorical",
    "sampling_scores",
]
