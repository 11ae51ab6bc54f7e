"""``lightning-grpo``: the LightningCLI entry point (fit | validate | test).

The data module's tokenizer is linked to the policy's path, so a config names the model once. An
optional ``warm_start`` section builds and supervises a starting checkpoint at ``model_name_or_path``
before ``fit`` when that path does not exist yet (the demo uses it to build its tiny model).
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from lightning_grpo.data import RolloutDataModule
from lightning_grpo.module import GRPOModule
from lightning_grpo.warm_start import WarmStart


class GRPOCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("model.model_name_or_path", "data.tokenizer")
        parser.add_argument(
            "--warm_start",
            type=WarmStart | None,
            default=None,
            help="Build and supervise the starting checkpoint at model.model_name_or_path first, if missing.",
        )

    def before_fit(self) -> None:
        self._warm_start()

    def before_validate(self) -> None:
        self._warm_start()

    def _warm_start(self) -> None:
        warm_start = self.config_init[self.subcommand].get("warm_start")
        if warm_start is not None:
            warm_start.run(self.model.hparams.model_name_or_path, self.datamodule.source)


def main(args: list[str] | None = None) -> None:
    GRPOCLI(
        GRPOModule,
        RolloutDataModule,
        subclass_mode_model=False,
        subclass_mode_data=False,
        args=args,
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
