"""Options that moved: an old flat name on the command line or in a config file is an error naming the new one.

The data module's 22 flat options became groups (``data.prompt``, ``data.rollout`` with its ``sampling``,
``data.validation``), and so did the module's (``model.optimizer``, ``model.update``, ``model.logging``). jsonargparse would reject an old name with a generic message after its usage
text; :func:`check_renamed` runs first and says where the option went.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from lightning_grpo.argv_checks import config_file_at

RENAMED: dict[str, str] = {
    **{f"data.{k}": f"data.rollout.sampling.{k}" for k in ("max_new_tokens", "temperature", "top_p", "top_k")},
    **{f"data.{k}": f"data.rollout.{k}" for k in ("group_size", "sampler", "rewards", "reward_on_error", "dynamic_sampling")},
    "data.sampler_backend": "data.rollout.sampler (FastSampler or HFSampler)",
    "data.prompt_template": "data.prompt.template",
    "data.use_chat_template": "data.prompt.use_chat_template",
    "data.system_prompt": "data.prompt.system_prompt",
    "data.val_source": "data.validation.source",
    "data.val_batch_size": "data.validation.batch_size",
    "data.val_num_samples": "data.validation.num_samples",
    "data.val_greedy": "data.validation.greedy",
    "data.val_max_prompts": "data.validation.max_prompts",
    **{f"model.{k}": f"model.optimizer.{k}" for k in (
        "learning_rate", "weight_decay", "adam_betas", "warmup_steps", "lr_schedule", "min_lr_ratio", "max_grad_norm")},
    **{f"model.{k}": f"model.update.{k}" for k in (
        "updates_per_rollout", "epochs", "micro_batch_size", "mask_truncated", "logp_chunk_size", "on_nonfinite")},
    **{f"model.{k}": f"model.logging.{k}" for k in ("log_completions_every_n_steps", "num_completions_to_log")},
    "warm_start": "prepare (class_path: lightning_grpo.demo.warm_start.WarmStart, then its init_args)",
}
# Classes that moved: an old class_path in a config or on the command line names the new one.
MOVED_CLASSES: dict[str, str] = {"lightning_grpo.sources.Arithmetic": "lightning_grpo.demo.arithmetic.Arithmetic"}


class RenamedOptionError(SystemExit):
    """Exits with a one-line message (no traceback, no usage text)."""


def _config_keys(config: Any, prefix: str = "") -> list[str]:
    if not isinstance(config, dict):
        return []
    keys = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        keys.append(name)
        if key in ("data", "model") and isinstance(value, dict):
            keys += _config_keys(value, f"{name}.")
    return keys


def check_renamed(args: list[str]) -> None:
    """Raise :class:`RenamedOptionError` for the first old option name in ``args`` or their config files."""
    found: list[tuple[str, str]] = []  # (old name, where)
    for i, arg in enumerate(args):
        value = config_file_at(args, i)  # --config P, --config=P, -c P, -c=P, -cP
        match = re.match(r"^--([\w.]+)(?:[+]?=|$)", arg)
        if match:
            name = match.group(1)
            if name in RENAMED or name.split(".")[0] in RENAMED:
                found.append((name if name in RENAMED else name.split(".")[0], "the command line"))
            found += [(old, "the command line") for old in MOVED_CLASSES if old in arg]
        if value is not None:
            path = Path(value)
            if path.is_file():
                try:
                    config = yaml.safe_load(path.read_text())
                except yaml.YAMLError:
                    continue  # jsonargparse reports a broken file itself
                found += [(key, str(path)) for key in _config_keys(config) if key in RENAMED]
                found += [(old, str(path)) for old in MOVED_CLASSES if old in path.read_text()]
    if found:
        old, where = found[0]
        raise RenamedOptionError(f"error: {old} (in {where}) is now {RENAMED.get(old) or MOVED_CLASSES[old]}")
