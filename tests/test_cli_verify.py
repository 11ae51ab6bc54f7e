"""`lightning-grpo verify COMPLETION GOLD --explain` reaches the verifier's explanation."""

from __future__ import annotations

import pytest

from lightning_grpo.cli import main


def test_verify_subcommand_explains_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", "So the answer is \\boxed{42}.", "42", "--explain"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "rule: \\boxed{}" in out and "verdict:     correct" in out
    with pytest.raises(SystemExit):
        main(["verify", "The answer is 41.", "42"])
    assert capsys.readouterr().out.strip() == "incorrect"
