"""Loading causal LMs and tokenizers through ``from_pretrained(path_or_name)``, with errors naming the path.

The tiny offline models of the demo and the tests are built in :mod:`lightning_grpo.demo.tiny_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r}; expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]


class ModelLoadError(OSError):
    """A model or tokenizer path that is neither a loadable local checkpoint nor available from the hub."""


def _looks_like_hub_id(path_or_name: str) -> bool:
    """``name`` or ``org/name``: what the hub accepts. A longer or explicitly relative path is local, and
    so is ``dir/name`` when ``dir`` is a local folder (``runs/typo``: a mistyped path, not a hub org)."""
    parts = Path(path_or_name).parts
    if len(parts) > 2 or path_or_name.startswith((".", "/", "~")):
        return False
    return not (len(parts) == 2 and Path(parts[0]).is_dir())


def _from_pretrained(load: Any, path_or_name: str, role: str, what: str, **kwargs: Any) -> Any:
    """``load(path_or_name, **kwargs)``, with errors that name the path, the role and what was loaded.

    A path that does not exist locally and cannot be a hub id is reported as missing without asking
    the hub (``FileNotFoundError``); any other failure to load becomes a :class:`ModelLoadError` that
    says whether the local directory or the hub failed (transformers' own errors, such as "couldn't
    connect" or "Repo id must be in the form", are chained as the cause).
    """
    local = Path(path_or_name).expanduser()
    if not local.exists() and not _looks_like_hub_id(path_or_name):
        parts = Path(path_or_name).parts
        why_local = f"{parts[0]!r} is a local folder" if len(parts) == 2 else "it is not of the form name or org/name"
        raise FileNotFoundError(
            f"{role}: {what} path {path_or_name!r} does not exist (a local path, not a hub id: {why_local})"
        )
    try:
        return load(path_or_name, **kwargs)
    except (OSError, ValueError) as error:
        reason = " ".join(str(error).split())[:400]
        if local.exists():
            raise ModelLoadError(
                f"{role}: cannot load the {what} from the local path {path_or_name!r}: {reason}"
            ) from error
        raise ModelLoadError(
            f"{role}: cannot load the {what} {path_or_name!r}: no such local path, and the Hugging Face hub "
            f"did not provide it ({reason}). Give a local checkpoint directory, or run where the hub (or a "
            f"cache holding {path_or_name!r}) is reachable; without a network, HF_HUB_OFFLINE=1 skips the "
            f"hub's retries"
        ) from error


def load_causal_lm(path_or_name: str, dtype: str = "float32", role: str = "model") -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained`` with a clear error naming the path when it cannot load.

    A path that does not exist locally and cannot be a hub id (``name`` or ``org/name``) is reported
    as a missing path without asking the hub; ``role`` says what the model was for.
    """
    return _from_pretrained(AutoModelForCausalLM.from_pretrained, path_or_name, role, "model", dtype=resolve_dtype(dtype))


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute each decoder layer's activations in backward (non-reentrant), only in training mode.

    transformers 5 names this ``activation_checkpointing_enable``; 4.x ``gradient_checkpointing_enable``.
    """
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def load_tokenizer(path_or_name: str, role: str = "tokenizer") -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained`` with left padding and a pad token (EOS when the model has none).

    Errors name the path as :func:`load_causal_lm`'s do.
    """
    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, path_or_name, role, "tokenizer")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Every EOS id the generation config declares, plus the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise ValueError("the model and tokenizer declare no EOS token id; completions could never end")
    return sorted(ids)
