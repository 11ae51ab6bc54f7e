"""`lightning-grpo export`: a checkpoint becomes a Hugging Face folder that plain transformers loads, with its weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lightning_grpo.cli import main
from lightning_grpo.module import GRPOModule
from lightning_grpo.objectives import GRPO

ROOT = Path(__file__).resolve().parents[1]
DEMO = str(ROOT / "configs" / "demo.yaml")


@pytest.fixture(autouse=True)
def _argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["lightning-grpo"])


def _checkpoint(module: GRPOModule, path: Path) -> Path:
    """What a Lightning checkpoint holds for the export: the module's state dict and hyperparameters."""
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 5}, path)
    return path


def _export(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(["export", *args])
    return exited.value.code


def test_export_writes_the_checkpoints_weights_for_plain_transformers(tiny_model_dir: Path, tmp_path: Path) -> None:
    module = GRPOModule(str(tiny_model_dir), objective=GRPO(beta=0.0))
    module.configure_model()
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in module.policy.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))  # "trained": differs from the base model
    ckpt = _checkpoint(module, tmp_path / "last.ckpt")
    assert _export("--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "hf")) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    AutoTokenizer.from_pretrained(tmp_path / "hf")  # the tokenizer comes along
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for name, value in module.policy.state_dict().items():
        assert torch.equal(exported.state_dict()[name], value), name
    assert not torch.equal(base.state_dict()["model.embed_tokens.weight"], exported.state_dict()["model.embed_tokens.weight"])


def test_a_lora_checkpoint_needs_its_config_and_merges(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from peft import LoraConfig

    peft = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])
    module = GRPOModule(str(tiny_model_dir), objective=GRPO(beta=0.0), peft=peft)
    module.configure_model()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in module.policy.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))  # B = 0 at init: the adapter would change nothing
    ckpt = _checkpoint(module, tmp_path / "lora.ckpt")
    assert _export("--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "hf")) == 1
    assert "LoRA adapter" in capsys.readouterr().err and not (tmp_path / "hf").exists()
    config = tmp_path / "lora.yaml"
    config.write_text(
        "model:\n  peft:\n    class_path: peft.LoraConfig\n    init_args:\n      r: 2\n      lora_alpha: 4\n"
        "      target_modules: [q_proj, v_proj]\n"
    )
    code = _export("--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "merged"), "--merge_adapter", "--config", DEMO,
                   "--config", str(config), "--prepare=null", f"--model.model_name_or_path={tiny_model_dir}")
    assert code == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").state_dict()
    expected = module.policy.merge_and_unload().state_dict()  # peft's own merge
    assert set(exported) == set(expected)
    for name, value in expected.items():
        assert torch.allclose(exported[name], value, atol=1e-6), name


def test_a_missing_checkpoint_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _export("--ckpt_path", str(tmp_path / "nope.ckpt"), "--output_dir", str(tmp_path / "hf")) == 1
    assert capsys.readouterr().err.strip() == f"error: --ckpt_path: no checkpoint file at {tmp_path / 'nope.ckpt'}"


def test_a_config_for_another_host_and_a_resumed_run_still_exports(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Only the model section is read: an accelerator this host lacks and the top-level ckpt_path of a saved
    # config (what `fit` writes to version_N/config.yaml) are not the export's business.
    module = GRPOModule(str(tiny_model_dir), objective=GRPO(beta=0.0))
    module.configure_model()
    with torch.no_grad():
        module.policy.get_input_embeddings().weight.add_(0.5)
    ckpt = _checkpoint(module, tmp_path / "last.ckpt")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"seed_everything: 0\ntrainer:\n  accelerator: gpu\n  devices: 8\n  strategy: ddp\nckpt_path: {ckpt}\n"
        "data:\n  prompts_per_step: 3\nprepare: null\n"
        f"model:\n  model_name_or_path: {tiny_model_dir}\n  optimizer:\n    learning_rate: 0.001\n"
    )
    assert _export("--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "hf"), "--config", str(config),
                   "--trainer.devices=2", "--data.prompts_per_step", "5") == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").state_dict()
    assert torch.equal(exported["model.embed_tokens.weight"], module.policy.state_dict()["model.embed_tokens.weight"])


def test_a_bad_model_option_in_the_export_is_one_line(tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    module = GRPOModule(str(tiny_model_dir), objective=GRPO(beta=0.0))
    ckpt = _checkpoint(module, tmp_path / "last.ckpt")
    code = _export("--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "hf"), f"--model.model_name_or_path={tiny_model_dir}",
                   "--model.optimizer.learning_rate=-1")
    assert code == 1 and not (tmp_path / "hf").exists()
    assert capsys.readouterr().err.strip() == "error: model.optimizer.learning_rate must be > 0, got -1.0"
    with pytest.raises(SystemExit) as exited:
        main(["export", "--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "hf"), "--model.learnin_rate=1"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "learnin_rate" in err and "usage:" not in err


@pytest.mark.slow
def test_a_lora_run_exports_with_the_config_it_saved(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    runs = tmp_path / "runs"
    main([
        "fit", "--config", DEMO, "--prepare=null", f"--model.model_name_or_path={tiny_model_dir}",
        "--model.peft=peft.LoraConfig", "--model.peft.init_args.r=2", "--model.peft.init_args.lora_alpha=4",
        "--model.peft.init_args.target_modules=[q_proj,v_proj]", "--model.optimizer.learning_rate=0.01",
        "--data.prompts_per_step=2", "--data.rollout.group_size=2", "--data.rollout.sampling.max_new_tokens=4",
        "--trainer.val_check_interval=null", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--trainer.max_steps=1", f"--trainer.logger.init_args.save_dir={runs}",
        "--trainer.callbacks.every_n_train_steps=1",
    ])
    version = runs / "demo" / "version_0"
    ckpt = version / "checkpoints" / "last.ckpt"
    assert _export("--ckpt_path", str(ckpt), "--output_dir", str(tmp_path / "adapter"), "--config", str(version / "config.yaml")) == 0
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    trained = torch.load(ckpt, weights_only=True)["state_dict"]
    assert len(adapter) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj) x (lora_A, lora_B)
    for key, value in adapter.items():  # the run's lora_A (random at init: a fresh adapter differs); peft drops "default"
        assert torch.equal(value, trained["policy." + key.replace(".weight", ".default.weight")]), key
