"""``lightning-grpo``: the LightningCLI entry point (fit | validate | test).

The data module's tokenizer is linked to the policy's path, so a config names the model once. The
demo's optional ``warm_start`` section builds and supervises its tiny model at ``warm_start.output_dir``
before ``fit`` when the policy is loaded from that path and nothing is there yet; it never builds a
stand-in anywhere else.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from lightning_grpo.data import RolloutDataModule
from lightning_grpo.module import GRPOModule
from lightning_grpo.demo.warm_start import WarmStart


class GRPOCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.link_arguments("model.model_name_or_path", "data.tokenizer")
        parser.add_argument(
            "--warm_start",
            type=WarmStart | None,
            default=None,
            help="The demo's warm start: build and supervise its tiny model at warm_start.output_dir first, if the "
            "policy is that path and it is missing.",
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
