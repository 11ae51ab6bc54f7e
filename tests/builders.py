"""Test builders: the data module and the module from the flat keyword arguments the tests read best.

``make_data(source, tokenizer=..., group_size=4, max_new_tokens=4, rewards=[...], val_batch_size=2)``
sorts the keywords into the data module's groups (``prompt``, ``rollout``, ``validation``) and builds it
through its public constructor; a keyword it does not know is an error. ``make_module(path,
learning_rate=1e-3, updates_per_rollout=2)`` does the same for ``GRPOModule``'s groups.
"""

from __future__ import annotations

from typing import Any

from lightning_grpo.data import PromptFormat, RolloutDataModule, Validation
from lightning_grpo.demo.arithmetic import Arithmetic
from lightning_grpo.rewards.exact import ExactInteger
from lightning_grpo.module import GRPOModule
from lightning_grpo.module_settings import Logging, Optimization, UpdateLoop
from lightning_grpo.rollout_engine import RolloutEngine
from lightning_grpo.sampling import Sampling

_SAMPLING = {"max_new_tokens", "temperature", "top_p", "top_k"}
_ENGINE = {"group_size", "sampler", "environment", "rewards", "reward_on_error", "dynamic_sampling", "max_episode_tokens"}
_PROMPT = {"prompt_template": "template", "use_chat_template": "use_chat_template", "system_prompt": "system_prompt"}
_VALIDATION = {"val_source": "source", "val_batch_size": "batch_size", "val_num_samples": "num_samples",
               "val_greedy": "greedy", "val_max_prompts": "max_prompts"}
_DATA = {"source", "tokenizer", "prompts_per_step", "seed"}


def make_data(source: Any = None, **flat: Any) -> RolloutDataModule:
    unknown = set(flat) - _SAMPLING - _ENGINE - set(_PROMPT) - set(_VALIDATION) - _DATA
    if unknown:
        raise TypeError(f"make_data got unknown keywords {sorted(unknown)}")
    if flat.get("rewards") is None:
        flat["rewards"] = [ExactInteger()]  # the demo's task and reward unless a test names others
    source = source if source is not None else Arithmetic()
    sampling = Sampling(**{k: v for k, v in flat.items() if k in _SAMPLING})
    engine = RolloutEngine(sampling=sampling, **{k: v for k, v in flat.items() if k in _ENGINE})
    prompt = PromptFormat(**{_PROMPT[k]: v for k, v in flat.items() if k in _PROMPT})
    validation = Validation(**{_VALIDATION[k]: v for k, v in flat.items() if k in _VALIDATION})
    data = {k: v for k, v in flat.items() if k in _DATA}
    if source is not None:
        data["source"] = source
    return RolloutDataModule(prompt=prompt, rollout=engine, validation=validation, **data)


_OPTIMIZATION = {"learning_rate", "weight_decay", "adam_betas", "warmup_steps", "lr_schedule", "min_lr_ratio", "max_grad_norm"}
_UPDATE = {"updates_per_rollout", "epochs", "micro_batch_size", "mask_truncated", "logp_chunk_size", "on_nonfinite",
           "max_consecutive_skips", "max_rollouts"}
_LOGGING = {"log_completions_every_n_steps", "num_completions_to_log"}


def make_module(model_name_or_path: str, **flat: Any) -> GRPOModule:
    """A ``GRPOModule`` from flat keywords, sorted into its ``optimizer``, ``update`` and ``logging`` groups."""
    groups = {
        "optimizer": (Optimization, _OPTIMIZATION),
        "update": (UpdateLoop, _UPDATE),
        "logging": (Logging, _LOGGING),
    }
    kwargs = {k: v for k, v in flat.items() if not any(k in names for _, names in groups.values())}
    for name, (cls, names) in groups.items():
        values = {k: v for k, v in flat.items() if k in names}
        if values:
            kwargs[name] = cls(**values)
    return GRPOModule(model_name_or_path, **kwargs)
