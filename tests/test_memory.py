"""Bounded memory at the real vocabulary size through a whole training step and a validation.

A random Qwen2 with the real Qwen2.5 vocabulary (151,936 embedding rows; tiny width), trained one
GRPO step (β = 0.04, so the reference log-probs run too) and validated once, with every tensor any
operation returns watched (forward, backward, sampling, loss, optimizer, validation): none may come
near the size of the float32 logits of the batch, [N, Tc, V], which the loss and the log-probs used
to materialise. ``tools/memory_real_vocab.py`` measures the same at the issue's size (peak RSS).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch import Trainer

import lightning_grpo.logprobs as logprobs_module
from tests.builders import make_data, make_module
from lightning_grpo.objectives import GRPO
from lightning_grpo.demo.arithmetic import Arithmetic
from tests.test_logprobs import REAL_VOCAB, LargestTensor

PROMPTS, GROUP, NEW_TOKENS = 2, 4, 24


@pytest.fixture(scope="module")
def real_vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from memory_real_vocab import QWEN25_TOKENIZER, save_real_vocab_qwen2

    # The tokenizer has fewer entries than the embedding, as real Qwen2.5 checkpoints: ids past it may be sampled.
    return save_real_vocab_qwen2(tmp_path_factory.mktemp("real_vocab") / "qwen2", hidden=16, layers=1,
                                 vocab=REAL_VOCAB, tokenizer_size=QWEN25_TOKENIZER)


def _fit_and_validate(model_dir: Path, watch: LargestTensor) -> Trainer:
    trainer = Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=1, val_check_interval=1)
    # logp_chunk_size=2: blocks of 2 positions x 8 rows, so that a block is far smaller than the logits
    module = make_module(str(model_dir), objective=GRPO(beta=0.04), logp_chunk_size=2, log_completions_every_n_steps=0)
    data = make_data(Arithmetic(num_train=16, num_validation=2), tokenizer=str(model_dir),
                             prompts_per_step=PROMPTS, group_size=GROUP, max_new_tokens=NEW_TOKENS,
                             val_batch_size=2, val_num_samples=2)
    with watch:
        trainer.fit(module, data)
    return trainer


@pytest.mark.slow
def test_no_tensor_near_the_size_of_the_logits_in_a_training_step_and_validation(real_vocab_dir: Path) -> None:
    watch = LargestTensor()
    trainer = _fit_and_validate(real_vocab_dir, watch)
    assert trainer.global_step == 1 and "val/pass@2" in trainer.callback_metrics
    assert "aten.embedding_dense_backward.default" in watch.ops  # the backward ran under the watch
    logits_bytes = PROMPTS * GROUP * NEW_TOKENS * REAL_VOCAB * 4  # [N, Tc, V] float32: 117 MB
    # The largest legitimate tensors: one [16, V] block, the embedding and its gradient / Adam moments [V, 16].
    assert watch.largest < logits_bytes / 4, (watch.largest, watch.op)


@pytest.mark.slow
def test_the_watch_sees_the_full_logits_when_they_are_materialised(real_vocab_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The mutation the test above guards against: log-probs through the model's own full logits."""
    monkeypatch.setattr(logprobs_module, "chunked_head", lambda model: (None, None, "forced by the test"))
    watch = LargestTensor()
    with pytest.warns(UserWarning, match="forced by the test"):
        _fit_and_validate(real_vocab_dir, watch)
    assert watch.largest >= PROMPTS * GROUP * NEW_TOKENS * REAL_VOCAB * 4 * 0.5, (watch.largest, watch.op)
