#!/usr/bin/env python3
"""Write an LM trained by ``speechllm.bin.lm_train`` as a transformers folder (LoRA merged into the weights) with
its tokenizer, so that N-best rescoring and shallow or delayed fusion load it like any pretrained LLM.

With a corpus BPE as label units (``--token_type bpe``) the folder also holds the BPE model, the LLM's own
tokenizer (``llm_tokenizer/``) and ``label_units.yaml``, which ``speechllm.models.llm.load_tokenizer`` reads.

    python -m speechllm.bin.export_lm --train_config exp/lm/config.yaml --model_file exp/lm/valid.loss.ave.pth \\
        --output_dir exp/lm/exported
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import yaml


def export(train_config: str, model_file: str, output_dir: str) -> Path:
    import torch

    from speechllm.tasks.causal_lm import CausalLMTask, load_lm_label_tokenizer

    model, args = CausalLMTask.build_model_from_file(train_config, None, "cpu")
    model.load_state_dict(torch.load(model_file, map_location="cpu", weights_only=True), strict=True)
    llm = model.llm.merge_and_unload() if hasattr(model.llm, "merge_and_unload") else model.llm
    return write_lm_folder(llm, load_lm_label_tokenizer(args), output_dir)


def write_lm_folder(llm, tokenizer, output_dir: str) -> Path:
    """``llm`` and its ``tokenizer`` (a transformers tokenizer, or BPELabelUnits) as a folder that
    ``speechllm.models.llm.load_causal_lm`` / ``load_tokenizer`` read."""
    from speechllm.models.llm import LABEL_UNITS_FILE
    from speechllm.text.tokenizers import BPELabelUnits

    out = Path(output_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Written beside, then renamed: an interrupted export never leaves a folder that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        llm.save_pretrained(staging)
        if isinstance(tokenizer, BPELabelUnits):
            shutil.copy(tokenizer.bpemodel, staging / "bpe.model")
            tokenizer.llm_tokenizer.save_pretrained(staging / "llm_tokenizer")
            units = {"bpemodel": "bpe.model", "llm_tokenizer": "llm_tokenizer", "kept_llm_ids": tokenizer.kept_llm_ids}
            (staging / LABEL_UNITS_FILE).write_text(yaml.safe_dump(units), encoding="utf-8")
        else:
            tokenizer.save_pretrained(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_config", required=True, help="config.yaml of the LM's training")
    parser.add_argument("--model_file", required=True, help="its checkpoint, e.g. valid.loss.ave.pth")
    parser.add_argument("--output_dir", required=True, help="the transformers folder to write")
    args = parser.parse_args(argv)
    print(export(args.train_config, args.model_file, args.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
