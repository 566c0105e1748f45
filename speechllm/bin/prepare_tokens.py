#!/usr/bin/env python3
"""Stage 5 of the recipe: token models.

* trains the SentencePiece BPE of the CTC head (``OUT/ctc_bpe.model``, ``OUT/ctc_tokens.txt``);
* with ``--toy_llm_config``, creates a randomly initialised LLM folder (config, weights and a BPE tokenizer trained
  on the same text) that loads through ``AutoModelForCausalLM.from_pretrained`` like any pretrained LLM: the demo
  and CI use it where no pretrained LLM can be downloaded;
* reports how the LLM tokenizer splits the training text (``OUT/llm_tokens_report.txt``).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from speechllm.data.datadir import read_kv

TOY_LLM_DEFAULTS = dict(
    architecture="llama", vocab_size=256, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, seed=0,
)
ARCHITECTURES = {"llama": "LlamaConfig", "qwen2": "Qwen2Config"}


def train_bpe(sentences: list, model_prefix: Path, vocab_size: int, special_ids: bool) -> None:
    """SentencePiece BPE; with ``special_ids`` the LLM layout unk=0, bos=1, eos=2, pad=3, else only unk=0."""
    import sentencepiece

    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        f.write("\n".join(s for s in sentences if s) + "\n")
        corpus = f.name
    ids = dict(unk_id=0, bos_id=1, eos_id=2, pad_id=3) if special_ids else dict(unk_id=0, bos_id=-1, eos_id=-1)
    try:
        sentencepiece.SentencePieceTrainer.train(
            input=corpus, model_prefix=str(model_prefix), vocab_size=vocab_size, model_type="bpe",
            character_coverage=1.0, input_sentence_size=10_000_000, shuffle_input_sentence=True,
            minloglevel=2, **ids,
        )
    except RuntimeError as e:
        raise SystemExit(f"prepare_tokens: SentencePiece could not train a {vocab_size}-token BPE on "
                         f"{len(sentences)} sentences ({e}); lower the vocabulary size") from e
    finally:
        Path(corpus).unlink()


def make_toy_llm(config_file: Path, sentences: list, out_dir: Path) -> None:
    import torch
    import transformers

    with open(config_file, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    unknown = sorted(set(conf) - set(TOY_LLM_DEFAULTS))
    if unknown:
        raise SystemExit(f"{config_file}: unknown key(s) {unknown}; valid keys: {sorted(TOY_LLM_DEFAULTS)}")
    conf = {**TOY_LLM_DEFAULTS, **conf}
    if conf["architecture"] not in ARCHITECTURES:
        raise SystemExit(f"{config_file}: architecture '{conf['architecture']}' not in {sorted(ARCHITECTURES)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    train_bpe(sentences, out_dir / "tokenizer", conf["vocab_size"], special_ids=True)
    (out_dir / "tokenizer.vocab").unlink()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out_dir)  # converts tokenizer.model
    tokenizer.pad_token = "<pad>"
    tokenizer.save_pretrained(out_dir)
    config_class = getattr(transformers, ARCHITECTURES[conf.pop("architecture")])
    torch.manual_seed(conf.pop("seed"))
    config = config_class(bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=True, **conf)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    logging.info(f"toy LLM: {type(model).__name__}, {params:,} parameters, vocabulary {conf['vocab_size']} -> {out_dir}")


def report_llm_tokens(llm: str, sentences: list, out_file: Path) -> None:
    from speechllm.models.llm import load_tokenizer, token_ids

    tokenizer = load_tokenizer(llm)
    lengths = [len(token_ids(tokenizer, s)) for s in sentences]
    unk = tokenizer.unk_token_id
    unk_count = sum(token_ids(tokenizer, s).count(unk) for s in sentences) if unk is not None else 0
    words = sum(len(s.split()) for s in sentences)
    lines = [
        f"llm: {llm}",
        f"vocabulary: {len(tokenizer)}",
        f"utterances: {len(sentences)}  words: {words}  tokens: {sum(lengths)}",
        f"tokens per word: {sum(lengths) / max(words, 1):.2f}",
        f"tokens per utterance: mean {statistics.mean(lengths or [0]):.1f}, max {max(lengths or [0])}",
        f"unknown tokens: {unk_count}",
    ]
    out_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for line in lines:
        logging.info(line)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", required=True, help="Kaldi 'text' file of the training set")
    parser.add_argument("--output_dir", required=True, help="where token models and reports go")
    parser.add_argument("--ctc_bpe_vocab_size", type=int, default=0, help="CTC BPE size; 0: no CTC vocabulary")
    parser.add_argument("--llm", default="", help="LLM folder, .gguf file or hub name (for the report)")
    parser.add_argument("--toy_llm_config", default="", help="YAML of a randomly initialised LLM to create")
    parser.add_argument("--toy_llm_dir", default="", help="where the toy LLM goes (needs --toy_llm_config)")
    return parser


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s prepare_tokens: %(message)s")
    args = get_parser().parse_args(argv)
    if bool(args.toy_llm_config) != bool(args.toy_llm_dir):
        raise SystemExit("prepare_tokens: --toy_llm_config and --toy_llm_dir go together")
    if args.toy_llm_config and args.llm:
        raise SystemExit("prepare_tokens: give either --llm (a pretrained LLM) or --toy_llm_config, not both")
    sentences = [" ".join(v.split()) for v in read_kv(args.text).values()]
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.ctc_bpe_vocab_size > 0:
        train_bpe(sentences, out / "ctc_bpe", args.ctc_bpe_vocab_size, special_ids=False)
        vocab = (out / "ctc_bpe.vocab").read_text(encoding="utf-8").splitlines()
        tokens = ["<blank>"] + [line.split("\t")[0] for line in vocab]
        (out / "ctc_tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
        logging.info(f"CTC BPE: {len(tokens)} tokens (blank included) -> {out}/ctc_bpe.model")
    llm = args.llm
    if args.toy_llm_config:
        make_toy_llm(Path(args.toy_llm_config), sentences, Path(args.toy_llm_dir))
        llm = args.toy_llm_dir
    if llm:
        report_llm_tokens(llm, sentences, out / "llm_tokens_report.txt")


if __name__ == "__main__":
    main(sys.argv[1:])
