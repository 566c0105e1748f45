#!/usr/bin/env python3
"""Stage 5 of the recipe: token models.

* trains the SentencePiece BPE of the CTC head (``OUT/ctc_bpe.model``, ``OUT/ctc_tokens.txt``);
* trains the SentencePiece BPE of an acoustic model trained by ESPnet's ASRTask (``OUT/am_bpe.model``) and writes
  its token list in ESPnet's layout (``OUT/am_tokens.txt``: ``<blank>``, ``<unk>``, the pieces, ``<sos/eos>``);
* with ``--toy_llm_config``, creates a randomly initialised LLM folder (config, weights and a BPE tokenizer trained
  on the same text) that loads through ``AutoModelForCausalLM.from_pretrained`` like any pretrained LLM: the demo
  and CI use it where no pretrained LLM can be downloaded;
* with ``--convert_gguf_to DIR``, dequantises the ``--llm`` GGUF file once into a transformers folder that every
  later job loads in under a second (instead of dequantising it again in each);
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
    pretrain_steps=0, pretrain_batch_size=32, pretrain_lr=0.002,
    # Share of pretraining examples that are CTC paths -> transcript (see pretrain_on_text); > 0 adds <blank>.
    pretrain_ctc_paths=0.0, pretrain_path_noise=0.1,
    # Share of pretraining examples that are a misspelt copy of a sentence at aligned positions -> the sentence
    # (model_conf.speech_positions aligned with the ctc_posterior adapter and ctc_compress; see pretrain_on_text).
    pretrain_aligned_copies=0.0,
)
BLANK_TOKEN = "<blank>"  # the CTC blank as a token of the toy LLM (model_conf.ctc_blank_token)
ARCHITECTURES = {"llama": "LlamaConfig", "qwen2": "Qwen2Config"}


def train_bpe(sentences: list, model_prefix: Path, vocab_size: int) -> None:
    """The CTC head's SentencePiece BPE: unk=0 and no BOS/EOS (CTCTokenizer puts the blank before it)."""
    import sentencepiece

    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as f:
        f.write("\n".join(s for s in sentences if s) + "\n")
        corpus = f.name
    try:
        sentencepiece.SentencePieceTrainer.train(
            input=corpus, model_prefix=str(model_prefix), vocab_size=vocab_size, model_type="bpe",
            character_coverage=1.0, input_sentence_size=10_000_000, shuffle_input_sentence=True,
            minloglevel=2, unk_id=0, bos_id=-1, eos_id=-1,
        )
    except RuntimeError as e:
        raise SystemExit(f"prepare_tokens: SentencePiece could not train a {vocab_size}-token BPE on "
                         f"{len(sentences)} sentences ({e}); lower the vocabulary size") from e
    finally:
        Path(corpus).unlink()


def ctc_token_list(bpe_prefix: Path) -> list:
    """The CTC head's labels of a BPE trained by ``train_bpe``: the blank first, then the pieces (``<unk>`` is
    piece 0)."""
    vocab = Path(f"{bpe_prefix}.vocab").read_text(encoding="utf-8").splitlines()
    return ["<blank>"] + [line.split("\t")[0] for line in vocab]


def espnet_token_list(bpe_prefix: Path) -> list:
    """ESPnet's token list of such a BPE: the CTC labels, then ``<sos/eos>`` (the decoder's start and end label)."""
    return ctc_token_list(bpe_prefix) + ["<sos/eos>"]


def train_llm_tokenizer(sentences: list, vocab_size: int, blank: bool = False):
    """A SentencePiece-style BPE (``▁`` marks word starts, every word included) as a transformers tokenizer with
    ids unk=0, bos=1, eos=2, pad=3 (and <blank>=4 with ``blank``). Built with the tokenizers library: converting a
    sentencepiece model instead drops the ``▁`` of the first word, so a word's first occurrence would be split
    differently from the others."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"] + ([BLANK_TOKEN] if blank else [])
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.train_from_iterator(sentences, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials))
    if backend.get_vocab_size() > vocab_size:
        raise SystemExit(f"prepare_tokens: the transcripts have {backend.get_vocab_size()} distinct symbols, more "
                         f"than vocab_size {vocab_size} of the toy LLM config; raise vocab_size")
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", additional_special_tokens=[BLANK_TOKEN] if blank else None)


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
    tokenizer = train_llm_tokenizer(sentences, conf["vocab_size"], blank=conf["pretrain_ctc_paths"] > 0)
    tokenizer.save_pretrained(out_dir)
    config_class = getattr(transformers, ARCHITECTURES[conf.pop("architecture")])
    pretrain = {key: conf.pop(f"pretrain_{key}")
                for key in ("steps", "batch_size", "lr", "ctc_paths", "path_noise", "aligned_copies")}
    torch.manual_seed(conf.pop("seed"))
    config = config_class(bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=True, **conf)
    model = transformers.AutoModelForCausalLM.from_config(config)
    if pretrain["steps"]:
        pretrain_on_text(model, tokenizer, sentences, **pretrain)
    model.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    logging.info(f"toy LLM: {type(model).__name__}, {params:,} parameters, vocabulary {conf['vocab_size']} -> {out_dir}")


def ctc_path(ids: list, blank: int, vocab_size: int, rng, noise: float) -> list:
    """A CTC-like path of ``ids``: each token repeated 1-3 times, blanks between some of them, and a share ``noise``
    of the tokens replaced by random ones (recognition errors the reader must live with)."""
    path = []
    for token in ids:
        if rng.random() < noise:
            token = rng.randrange(blank + 1, vocab_size)
        path += [token] * rng.randint(1, 3)
        if rng.random() < 0.5:
            path += [blank] * rng.randint(1, 2)
    return path


def misspelt(ids: list, vocab_size: int, first_id: int, rng, noise: float) -> list:
    """``ids`` with a share ``noise`` of its tokens replaced by random ones and half that share dropped: what a
    CTC head's greedy transcript makes of a sentence."""
    out = []
    for token in ids:
        draw = rng.random()
        if draw < noise / 2:
            continue
        out.append(rng.randrange(first_id, vocab_size) if draw < 1.5 * noise else token)
    return out


def aligned_positions(prefix: int, length: int) -> list:
    """Positions of ``[BOS, prefix x N, BOS, text x L, EOS]`` as SpeechLLM gives them with aligned speech and a
    one-token prompt_suffix (speechllm.models.positions): BOS 0, the separator 1, the N prefix elements spread
    over the positions of the L tokens they stand for, the text from 2."""
    import torch

    from speechllm.models.positions import aligned_prefix_positions

    positions, start = aligned_prefix_positions(torch.ones(1, prefix + 2, dtype=torch.long), torch.tensor([prefix]),
                                                1, torch.tensor([length]))
    return positions[0].tolist() + [float(start[0]) + i for i in range(length + 1)]


def pretrain_on_text(model, tokenizer, sentences: list, steps: int, batch_size: int, lr: float,
                     ctc_paths: float = 0.0, path_noise: float = 0.1, aligned_copies: float = 0.0) -> None:
    """Causal-LM training on the transcripts, as an LLM is pretrained on text before it meets speech: the speech
    LLM then starts from a model that knows the language, and only has to learn to listen.

    With ``ctc_paths`` > 0, that share of the examples is ``[BOS, CTC path of a sentence, sentence, EOS]`` with the
    loss on the sentence only: the toy LLM learns to read token runs and blanks (the form of the speech embeddings
    under ``model_conf.ctc_head: llm_embeddings`` with ``ctc_blank_token: <blank>``) and write what they spell.
    A pretrained LLM brings that reading ability from its own pretraining; a 3-layer toy LLM does not learn it
    from 1500 utterances of speech in minutes.

    With ``aligned_copies`` > 0, that share is ``[BOS, misspelt copy of a sentence, BOS, sentence, EOS]`` at the
    aligned positions of ``model_conf.speech_positions: aligned`` with ``prompt_suffix: <s>``
    (``aligned_positions``), loss on the sentence: the form in
    which a speech LLM with the ctc_posterior adapter and ctc_compress hands the LLM the CTC head's transcript, as
    its own token embeddings, each near the position of the token it stands for."""
    import random

    import torch

    rng = random.Random(0)
    blank = tokenizer.convert_tokens_to_ids(BLANK_TOKEN) if ctc_paths > 0 else None
    sentence_ids = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in sentences if s]

    first_id = max(tokenizer.all_special_ids) + 1

    def example(ids: list) -> tuple:
        """(input ids, labels, positions): the labels cover what the speech LLM is trained to write."""
        if blank is not None and rng.random() < ctc_paths:
            head = [tokenizer.bos_token_id] + ctc_path(ids, blank, len(tokenizer), rng, path_noise)
            row = head + ids + [tokenizer.eos_token_id]
            return row, [-100] * len(head) + ids + [tokenizer.eos_token_id], list(range(len(row)))
        if rng.random() < aligned_copies:
            copy = misspelt(ids, len(tokenizer), first_id, rng, path_noise)
            head = [tokenizer.bos_token_id] + copy + [tokenizer.bos_token_id]
            return (head + ids + [tokenizer.eos_token_id], [-100] * len(head) + ids + [tokenizer.eos_token_id],
                    aligned_positions(len(copy), len(ids)))
        row = [tokenizer.bos_token_id, *ids, tokenizer.eos_token_id]
        return row, row, list(range(len(row)))

    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for step in range(1, steps + 1):
        picked = [example(sentence_ids[i])
                  for i in torch.randint(len(sentence_ids), (batch_size,), generator=generator).tolist()]
        width = max(len(row) for row, _, _ in picked)
        ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row, _, _ in picked])
        labels = torch.tensor([labels + [-100] * (width - len(labels)) for _, labels, _ in picked])
        positions = torch.tensor([pos + [0.0] * (width - len(pos)) for _, _, pos in picked])
        mask = (torch.arange(width)[None] < torch.tensor([len(row) for row, _, _ in picked])[:, None]).long()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, position_ids=positions).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps:
            logging.info(f"toy LLM pretraining on the transcripts: step {step}/{steps}, loss {loss.item():.3f}")
    model.eval()


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
    parser.add_argument("--am_bpe_vocab_size", type=int, default=0,
                        help="BPE size of an ESPnet ASRTask acoustic model (recipe --task asr); 0: none")
    parser.add_argument("--llm", default="", help="LLM folder, .gguf file or hub name (for the report)")
    parser.add_argument("--toy_llm_config", default="", help="YAML of a randomly initialised LLM to create")
    parser.add_argument("--toy_llm_dir", default="", help="where the toy LLM goes (needs --toy_llm_config)")
    parser.add_argument("--convert_gguf_to", default="", help="folder where the --llm GGUF file is dequantised")
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
        train_bpe(sentences, out / "ctc_bpe", args.ctc_bpe_vocab_size)
        tokens = ctc_token_list(out / "ctc_bpe")
        (out / "ctc_tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
        logging.info(f"CTC BPE: {len(tokens)} tokens (blank included) -> {out}/ctc_bpe.model")
    if args.am_bpe_vocab_size > 0:
        train_bpe(sentences, out / "am_bpe", args.am_bpe_vocab_size)
        tokens = espnet_token_list(out / "am_bpe")
        (out / "am_tokens.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
        logging.info(f"AM BPE: {len(tokens)} tokens (blank and sos/eos included) -> {out}/am_bpe.model")
    llm = args.llm
    if args.convert_gguf_to:
        if not llm.endswith(".gguf"):
            raise SystemExit(f"prepare_tokens: --convert_gguf_to needs --llm to be a .gguf file, got '{llm}'")
        from speechllm.models.llm import convert_gguf

        llm = str(convert_gguf(llm, args.convert_gguf_to))
        logging.info(f"{args.llm} dequantised into {llm}")
    if args.toy_llm_config:
        make_toy_llm(Path(args.toy_llm_config), sentences, Path(args.toy_llm_dir))
        llm = args.toy_llm_dir
    if llm:
        report_llm_tokens(llm, sentences, out / "llm_tokens_report.txt")


if __name__ == "__main__":
    main(sys.argv[1:])
