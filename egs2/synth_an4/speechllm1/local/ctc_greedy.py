#!/usr/bin/env python3
"""What the speech LLM adds over its own CTC head: the CTC head's greedy transcript of each utterance of a data dir
(argmax over the encoder output, runs merged, blanks dropped; CTC id = LLM id + 1) against decoding hypotheses,
each scored the same way (jiwer on the plain transcripts; an empty hypothesis counts as deletions).

    . ./path.sh; python3 local/ctc_greedy.py exp/train dump/test exp/train/decode_decode_llm_valid.acc.ave/test/text ...
"""
import argparse

import jiwer
import soundfile
import torch

from speechllm.models.ctc_compress import ctc_label_starts
from speechllm.speech2text import Speech2Text
from speechllm.text.tokenizers import CTC_BLANK_ID


def read_text(path: str) -> dict:
    lines = (line.rstrip("\n").split(" ", 1) for line in open(path, encoding="utf-8") if line.strip())
    return {fields[0]: fields[1].strip() if len(fields) > 1 else "" for fields in lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a speech LLM's exp dir (config.yaml, valid.acc.ave.pth)")
    parser.add_argument("data_dir", help="wav.scp (plain audio paths) and text")
    parser.add_argument("hyps", nargs="*", help="hypothesis text files to score beside it")
    args = parser.parse_args()
    s2t = Speech2Text(f"{args.model_dir}/config.yaml", f"{args.model_dir}/valid.acc.ave.pth")
    model, tokenizer = s2t.model, s2t.tokenizer
    if not model.ctc_shares_llm_vocab:
        raise SystemExit(f"{args.model_dir}: its CTC head is not over the LLM's tokens (ctc_token_type llm)")
    refs = read_text(f"{args.data_dir}/text")
    greedy = {}
    with torch.no_grad():
        for key, path in read_text(f"{args.data_dir}/wav.scp").items():
            audio, _ = soundfile.read(path, dtype="float32")
            speech = torch.from_numpy(audio)[None]
            encoded, lengths = model.encode(speech, torch.tensor([speech.size(1)]))
            labels = model.ctc.argmax(encoded)
            ids = labels[ctc_label_starts(labels, lengths, CTC_BLANK_ID)] - 1  # CTC id = LLM id + 1
            greedy[key] = tokenizer.decode(ids.tolist()).strip()
    keys = list(refs)

    def wer(hyps: dict) -> float:
        return 100 * jiwer.wer([refs[k] for k in keys], [hyps.get(k, "") or "<empty>" for k in keys])

    print(f"CTC greedy: {wer(greedy):.1f}")
    for path in args.hyps:
        print(f"{path}: {wer(read_text(path)):.1f}")


if __name__ == "__main__":
    main()
