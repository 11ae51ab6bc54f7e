"""The CLI's argument parser: Lightning's, with errors in a few lines instead of after the whole usage text.

jsonargparse prints the usage (about 90 lines for ``fit``) before every error; here an error is the
message and the tip to run ``--help``. A misspelled class name becomes one line that lists the allowed
names and the closest one (:func:`~lightning_grpo.class_name_hints.unknown_class_hint`).
"""

from __future__ import annotations

import sys
from typing import NoReturn

from jsonargparse._common import debug_mode_active
from lightning.pytorch.cli import LightningArgumentParser

from lightning_grpo.class_name_hints import own_class_hint, unknown_class_hint


class GRPOArgumentParser(LightningArgumentParser):
    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error or debug_mode_active():
            super().error(message, ex)  # raises: jsonargparse tries the next alternative
        parser = getattr(ex, "subcommand_parser", None) or self
        hint = unknown_class_hint(message) or own_class_hint(message)
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"error: {hint or message.strip()}\n")
        if hint is None:
            sys.stderr.write(f"(all options: {prog} --help)\n")
        self.exit(2)
