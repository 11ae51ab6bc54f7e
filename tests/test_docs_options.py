"""README and docs/ name options by their current names (an old flat name would stop a reader's run)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lightning_grpo.renamed_options import MOVED_CLASSES, RENAMED

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def old_names(text: str) -> set[str]:
    found = {m.group(1) for m in re.finditer(r"--([\w.]+)", text) if m.group(1) in RENAMED}
    found |= {m.group(1) for m in re.finditer(r"`((?:data|model)\.[\w.]+)", text) if m.group(1) in RENAMED}
    found |= {m.group(1) for m in re.finditer(r"--(warm_start)\.", text)}
    return found | {old for old in MOVED_CLASSES if old in text}


def test_the_scan_finds_an_old_name() -> None:
    assert old_names("run `--data.temperature=0.7` or set `model.learning_rate`") == {"data.temperature", "model.learning_rate"}
    assert old_names("`--data.rollout.sampling.temperature=0.7`") == set()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_use_current_option_names(page: Path) -> None:
    text = page.read_text()
    if page.name == "README.md":  # README names a few old ones on purpose, to say they are refused
        text = text.replace("`--data.temperature`", "").replace("`--model.learning_rate`", "")
    assert old_names(text) == set()
