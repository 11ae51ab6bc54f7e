"""Bad configuration fails early with a message that names the bad value and what is allowed."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.builders import make_data, make_module
from lightning_grpo.objectives import GRPO
from lightning_grpo.sources import BadRowError, GSM8K, JsonlProblems


def test_group_of_one_is_refused_for_an_estimator_that_compares_within_groups() -> None:
    module = make_module("unused")  # the default GroupNormalized needs >= 2 completions per group
    module.trainer = SimpleNamespace(datamodule=make_data(group_size=1))
    with pytest.raises(ValueError, match=r"group_size=1 .*GroupNormalized.*needs group_size >= 2"):
        module.setup("fit")
    module.trainer = SimpleNamespace(datamodule=make_data(group_size=2))
    module.setup("fit")


def test_prompts_that_do_not_split_into_whole_groups_per_rank_are_refused() -> None:
    data = make_data(prompts_per_step=3)
    data.trainer = SimpleNamespace(world_size=2, global_rank=0)
    with pytest.raises(ValueError, match=r"prompts_per_step=3 is not a whole number of groups per rank on 2 ranks"):
        _ = data.prompts_per_rank


def test_completion_budget_beyond_the_context_is_refused(tiny_model_dir: Path) -> None:
    data = make_data(tokenizer=str(tiny_model_dir), max_new_tokens=300)
    with pytest.raises(ValueError, match=r"data.rollout.max_new_tokens=300 leaves no room.*context of 256 tokens"):
        data.setup("fit")


def test_a_prompt_longer_than_the_context_left_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    rows = [{"problem": "1+1=", "answer": "2"}, {"problem": "9" * 250, "answer": "9"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = make_data(JsonlProblems(train_path=str(path)), tokenizer=str(tiny_model_dir), max_new_tokens=16,
                             use_chat_template=False)
    with pytest.raises(ValueError, match=r"prompt 'long-1' has 250 tokens.*240"):
        data.setup("fit")


def test_dataset_path_that_does_not_exist_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        GSM8K(train_path=missing).load("train")


def test_dataset_without_the_needed_fields_is_named(tmp_path: Path) -> None:
    path = tmp_path / "wrong.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "solution": "2"}) + "\n")
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['answer'\].*'question', 'solution'"):
        GSM8K(train_path=str(path)).load("train")
    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['problem'\]"):
        JsonlProblems(train_path=str(path), answer_field="solution").load("train")


def test_empty_dataset_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    import datasets

    datasets.Dataset.from_dict({"problem": [], "answer": []}).to_parquet(str(path))
    with pytest.raises(ValueError, match=r"empty.parquet.*is it empty"):
        JsonlProblems(train_path=str(path)).load("train")


def test_kl_without_a_loadable_reference_names_the_path_and_beta(tiny_model_dir: Path, tmp_path: Path) -> None:
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.04), reference_model_name_or_path=str(tmp_path / "ref"))
    with pytest.raises(FileNotFoundError, match=r"reference \(needed because the objective's beta = 0.04 > 0\).*ref'"):
        module.configure_model()
    # With beta = 0 no reference is loaded at all, so the same path is never touched.
    module = make_module(str(tiny_model_dir), objective=GRPO(beta=0.0), reference_model_name_or_path=str(tmp_path / "ref"))
    module.configure_model()
    assert module.reference is None


def test_missing_policy_path_is_named(tmp_path: Path) -> None:
    module = make_module(str(tmp_path / "runs" / "policy"))
    with pytest.raises(FileNotFoundError, match=r"policy: model path .*runs/policy' does not exist"):
        module.configure_model()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_batch_size": 0}, "validation.batch_size >= 1"),
        ({"val_greedy": False, "val_num_samples": 0}, "would generate nothing"),
        ({"group_size": 0}, "group_size must be >= 1, got 0"),
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1, got 0"),
        ({"prompt_template": "Q:"}, "data.prompt.template must contain '{question}'"),
    ],
)
def test_data_options_out_of_range_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_data(**kwargs)


def test_validation_without_held_out_prompts_says_so(tiny_model_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"problem": "1+1=", "answer": "2"}) + "\n")
    data = make_data(JsonlProblems(train_path=str(path)), tokenizer=str(tiny_model_dir))
    with pytest.raises(ValueError, match=r"no held-out prompts for validation.*set data.validation.source"):
        data.setup("validate")


def test_a_bad_row_in_the_sources_own_held_out_split_stops_the_run(tiny_model_dir: Path, tmp_path: Path) -> None:
    train, held_out = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text(json.dumps({"problem": "1+1=", "answer": "2"}) + "\n")
    held_out.write_text(json.dumps({"problem": "2+2=", "answer": "4"}) + "\n" + json.dumps({"problem": " ", "answer": "1"}) + "\n")
    data = make_data(JsonlProblems(train_path=str(train), validation_path=str(held_out)), tokenizer=str(tiny_model_dir))
    with pytest.raises(BadRowError, match=r"test.jsonl.*row 2 \(line 2\)"):
        data.setup("fit")  # not "no validation during fit": bad held-out data is bad data
