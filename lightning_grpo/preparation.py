"""Something a config asks to happen before ``fit`` or ``validate``: a :class:`RunPreparation`.

``--prepare`` (a config's top-level ``prepare:``) names one by ``class_path``; the CLI calls its
``prepare`` with the policy's path and the prompt source after the configuration is resolved and before
the trainer loads anything. The demo's warm start (``lightning_grpo.demo.warm_start.WarmStart``) is one:
it builds and supervises the demo's tiny model at its ``output_dir`` when the policy is loaded from there
and nothing is there yet. The core knows only this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from lightning_grpo.sources import PromptSource


class RunPreparation(ABC):
    @abstractmethod
    def prepare(self, model_name_or_path: str, source: PromptSource | None) -> None:
        """Make what the run needs before it starts (e.g. build the model at ``model_name_or_path``)."""
