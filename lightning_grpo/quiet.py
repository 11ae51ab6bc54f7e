"""Lightning messages whose premise does not hold in this project, silenced by their exact text.

Each entry names what the message warns about and why it does not apply here; any other warning,
including other warnings from the same Lightning modules, is left alone. What the project could fix at
the source it fixes there instead (the endless prompt stream leaves Lightning no mid-epoch position to
warn about on resume; :class:`~lightning_grpo.callbacks.ParameterSummary` prints no FLOPs it never
measured; :class:`~lightning_grpo.callbacks.FrozenModulesInEvalMode` lets the eval-mode warning through
unless every module in eval mode belongs to a frozen submodule).
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class HandledWarning:
    message: str  # regular expression matched at the start of the warning's text
    category: type[Warning]
    module: str  # the module the warning is attributed to
    why: str


HANDLED_WARNINGS = (
    HandledWarning(
        message=re.escape("Using ModelCheckpoint with manual optimization and every_n_train_steps, but no pre-optimization"),
        category=UserWarning,
        module=r"lightning\.pytorch\.callbacks\.model_checkpoint",
        why="GRPOModule checkpoints the state after a rollout's optimizer steps on purpose: step k's "
        "checkpoint holds the weights after k steps, which is what an exact resume continues from. The "
        "warning (with a 12-line code sample) assumes a module that wants the state before its update.",
    ),
    HandledWarning(
        message=re.escape("`isinstance(treespec, LeafSpec)` is deprecated"),
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
        why="Lightning's own use of torch.utils._pytree (every CombinedLoader builds a LeafSpec); nothing "
        "in a user's code or config triggers or can change it.",
    ),
)

HANDLED_INFO_PREFIXES = (
    # Advertising for another logging product, printed on every Trainer construction without LitLogger.
    "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]",
)

# Lightning's rank_zero_info goes through whichever of these loggers was bound last.
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _DropHandledInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(HANDLED_INFO_PREFIXES)


_INFO_FILTER = _DropHandledInfo()


def silence_handled_messages() -> None:
    """Install the filters for :data:`HANDLED_WARNINGS` and :data:`HANDLED_INFO_PREFIXES` (idempotent)."""
    for handled in HANDLED_WARNINGS:
        warnings.filterwarnings("ignore", message=handled.message, category=handled.category, module=handled.module)
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _INFO_FILTER not in logger.filters:
            logger.addFilter(_INFO_FILTER)
