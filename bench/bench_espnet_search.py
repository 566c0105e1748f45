"""Our batched search against ESPnet's own BatchBeamSearch on the same ESPnet ASRTask AED + CTC model, alone or
fused label by label with an LLM over the AM's BPE.

    tools/venv/bin/python bench/bench_espnet_search.py [--model_dir egs2/synth_an4/speechllm1/exp/train_am]
        [--model_file valid.acc.ave.pth] [--wav_scp egs2/synth_an4/speechllm1/dump/test/wav.scp] [--utts 150]
        [--beam_size 4] [--ctc_weight 0.3] [--batch_sizes 1 8 32]
        [--lm egs2/synth_an4/speechllm1/exp/train_lm/exported | --lm_from ../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--lm_weight 0.3]

ESPnet decodes one utterance at a time (``espnet2.bin.asr_inference.Speech2Text``: BatchBeamSearch over its
decoder and CTCPrefixScorer, maxlenratio 1.0, no length normalisation); ours decodes the same waveforms with the same
weights, ESPnet's end rule (``end_rule: espnet``) and raw log-probability ranking, one at a time and in batches.

With an LLM (``--lm``: a folder over the AM's BPE, as ``./run.sh --task lm --llm_token_type bpe`` exports it;
``--lm_from``: a pretrained LLM whose embedding and output layers are rebuilt for the AM's BPE here, untrained, which
is enough to time it), ESPnet's search gets it as one more full scorer that reads the whole hypothesis again at
every step, as ESPnet's Hugging Face decoder does (no KV cache); ours fuses it with its KV cache (decoding option
``lm_fusion: label``). Both search with the same weights: decoder 1 - ctc_weight, CTC ctc_weight, LLM lm_weight.
Prints throughput (utterances/s, model loading excluded) and the ratio, and compares the 1-best token ids with
ESPnet's: each disagreement is listed with both hypotheses' scores under the same model, recomputed in one pass,
so a reader can see whether it is a search difference (one side found a better-scoring hypothesis) or a tie.
Uses 1 thread unless OMP_NUM_THREADS says otherwise, like the recipe's decoding jobs. Runs from the recipe dir.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from espnet.nets.scorer_interface import BatchScorerInterface  # noqa: E402

from speechllm.data.datadir import read_kv  # noqa: E402
from speechllm.decoding.options import DecodingOptions  # noqa: E402
from speechllm.speech2text import Speech2Text  # noqa: E402


def joint_score(am, speech, ids, ctc_weight: float, lm_weight: float = 0.0, lm_scorer=None) -> float:
    """(1 - w) log P_decoder(ids + EOS) + w log P_CTC(ids) (+ lm_weight log P_LLM(ids + EOS)) of one utterance, in
    one pass."""
    memory = speech.encoded[0, :int(speech.encoded_lengths[0])]
    ys_in = torch.tensor([[am.sos_id, *ids]])
    logits, _ = am.decoder(memory[None], torch.tensor([memory.size(0)]), ys_in, torch.tensor([ys_in.size(1)]))
    decoder = torch.log_softmax(logits[0], -1).gather(1, torch.tensor([*ids, am.eos_id])[:, None]).sum().item()
    logp = am.model.ctc.log_softmax(memory[None]).transpose(0, 1)
    ctc = -torch.nn.functional.ctc_loss(logp, torch.tensor([ids], dtype=torch.long), torch.tensor([memory.size(0)]),
                                        torch.tensor([len(ids)]), blank=0, reduction="sum").item()
    lm = 0.0
    if lm_weight:
        ys = torch.tensor([[am.sos_id, *ids]])
        lm = sum(lm_scorer.batch_score(ys[:, :i + 1], None, None)[0][0, token].item()
                 for i, token in enumerate([*ids, am.eos_id]))
    return (1 - ctc_weight) * decoder + ctc_weight * ctc + lm_weight * lm


class RecomputingLLMScorer(BatchScorerInterface):
    """The LLM as an ESPnet full scorer: ``[BOS] + hypothesis`` run whole at every step, the AM's label ids mapped to
    the LLM's (``lm_ids``)."""

    def __init__(self, lm, bos_id: int, lm_ids: torch.Tensor):
        self.lm, self.bos_id, self.lm_ids = lm, bos_id, lm_ids

    def score(self, y, state, x):
        scores, _ = self.batch_score(y[None], [state], x[None])
        return scores[0], None

    def batch_score(self, ys, states, xs):
        ids = torch.cat([ys.new_full((ys.size(0), 1), self.bos_id), self.lm_ids[ys[:, 1:]]], dim=1)  # ys[:, 0]: SOS
        logits = self.lm(input_ids=ids).logits[:, -1].float()
        return torch.log_softmax(logits, dim=-1)[:, self.lm_ids], [None] * ys.size(0)


def llm_over_am_bpe(llm_path: str, bpemodel: str, out_dir: str) -> str:
    """``llm_path`` with its embedding and output layers rebuilt for the AM's BPE (as the LM task starts its
    training), written as an LM folder."""
    from speechllm.bin.export_lm import write_lm_folder
    from speechllm.models.llm import convert_gguf, load_causal_lm, load_tokenizer, rebuild_vocabulary
    from speechllm.text.tokenizers import label_tokenizer

    if llm_path.endswith(".gguf"):  # dequantised first, as the recipe's stage 5 does
        llm_path = str(convert_gguf(llm_path, str(Path(out_dir).with_name("dequantised"))))
    tokenizer = load_tokenizer(llm_path)
    llm = load_causal_lm(llm_path, finetune="frozen")
    units = label_tokenizer("bpe", bpemodel, tokenizer)
    rebuild_vocabulary(llm, tokenizer, units)
    return str(write_lm_folder(llm, units, out_dir))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default="egs2/synth_an4/speechllm1/exp/train_am")
    parser.add_argument("--model_file", default="valid.acc.ave.pth")
    parser.add_argument("--wav_scp", default="egs2/synth_an4/speechllm1/dump/test/wav.scp")
    parser.add_argument("--utts", type=int, default=150)
    parser.add_argument("--beam_size", type=int, default=4)
    parser.add_argument("--ctc_weight", type=float, default=0.3)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--lm", default="", help="an LLM folder over the AM's BPE (exp/train_lm/exported)")
    parser.add_argument("--lm_from", default="", help="a pretrained LLM folder, rebuilt for the AM's BPE here")
    parser.add_argument("--lm_weight", type=float, default=0.3)
    args = parser.parse_args()
    if args.lm and args.lm_from:
        parser.error("give --lm or --lm_from, not both")
    lm_from = str(Path(args.lm_from).resolve()) if args.lm_from else ""
    lm_path = str(Path(args.lm).resolve()) if args.lm else ""
    model_dir, wav_scp = Path(args.model_dir).resolve(), Path(args.wav_scp).resolve()
    os.chdir(model_dir.parents[1])  # the recipe dir: the config names the BPE model relative to it
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    config, model_file = str(model_dir / "config.yaml"), str(model_dir / args.model_file)
    scratch = tempfile.TemporaryDirectory()
    if lm_from:
        import yaml

        bpemodel = yaml.safe_load(open(config))["bpemodel"]
        lm_path = llm_over_am_bpe(lm_from, bpemodel, str(Path(scratch.name) / "lm"))

    keys, waves = [], []
    for key, path in list(read_kv(wav_scp).items())[: args.utts]:
        keys.append(key)
        waves.append(torch.from_numpy(sf.read(path, dtype="float32")[0]))
    audio_seconds = sum(w.numel() for w in waves) / 16000
    lm_weight = args.lm_weight if lm_path else 0.0
    print(f"{len(waves)} utterances, {audio_seconds:.1f} s of audio, {torch.get_num_threads()} thread(s), "
          f"beam {args.beam_size}, ctc_weight {args.ctc_weight}"
          + (f", LLM {args.lm or args.lm_from} x {lm_weight}" if lm_path else ""))

    from espnet2.bin.asr_inference import Speech2Text as ESPnetSpeech2Text

    espnet = ESPnetSpeech2Text(asr_train_config=config, asr_model_file=model_file, beam_size=args.beam_size,
                               ctc_weight=args.ctc_weight, lm_weight=0.0, penalty=0.0, maxlenratio=1.0,
                               minlenratio=0.0, nbest=1, batch_size=1)
    search_kind = type(espnet.beam_search).__name__
    if lm_path:
        from speechllm.models.espnet_am import lm_ids_of_am_labels
        from speechllm.models.llm import load_causal_lm, load_tokenizer

        lm = load_causal_lm(lm_path, finetune="frozen").eval()
        lm_tokenizer = load_tokenizer(lm_path)
        lm_ids = lm_ids_of_am_labels(espnet.asr_model.token_list, lm_tokenizer)
        if lm_ids is None:
            sys.exit(f"{lm_path}: its label units are not the AM's BPE")
        scorer = RecomputingLLMScorer(lm, lm_tokenizer.bos_token_id, torch.tensor(lm_ids))
        search = espnet.beam_search
        search.scorers["lm"] = search.full_scorers["lm"] = scorer
        search.weights["lm"] = lm_weight
    start = time.perf_counter()
    espnet_ids = []
    for wave in waves:
        with torch.no_grad():
            text, tokens, token_int, hyp = espnet(wave)[0]
        espnet_ids.append([int(i) for i in token_int])
    espnet_seconds = time.perf_counter() - start
    print(f"ESPnet {search_kind}, one utterance at a time: {len(waves) / espnet_seconds:.2f} utterances/s "
          f"({espnet_seconds:.1f} s)")

    options = DecodingOptions(beam_size=args.beam_size, ctc_weight=args.ctc_weight, length_penalty=0.0,
                              max_length_ratio=1.0, end_rule="espnet", lm=lm_path, lm_weight=lm_weight)
    ours = Speech2Text(config, model_file, options)
    for batch_size in args.batch_sizes:
        start = time.perf_counter()
        our_ids = []
        for first in range(0, len(waves), batch_size):
            chunk = waves[first:first + batch_size]
            lengths = torch.tensor([w.numel() for w in chunk])
            padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
            our_ids += [nbest[0].token_ids for nbest in ours.decode(padded, lengths)]
        seconds = time.perf_counter() - start
        same = sum(a == b for a, b in zip(our_ids, espnet_ids))
        print(f"ours, batches of {batch_size}: {len(waves) / seconds:.2f} utterances/s ({seconds:.1f} s), "
              f"{espnet_seconds / seconds:.1f}x ESPnet; 1-best equal to ESPnet's on {same} of {len(waves)}")
        for key, wave, mine, theirs in zip(keys, waves, our_ids, espnet_ids):
            if mine == theirs:
                continue
            with torch.no_grad():  # both hypotheses scored by the same model on the unpadded utterance
                speech = ours.model.encode_speech(wave[None], torch.tensor([wave.numel()]))
                mine_score, their_score = (joint_score(ours.model, speech, ids, args.ctc_weight, lm_weight,
                                                       scorer if lm_path else None) for ids in (mine, theirs))
                print(f"  {key}: ours {mine_score:.3f} '{ours.tokenizer.decode(mine)}' | "
                      f"ESPnet {their_score:.3f} '{ours.tokenizer.decode(theirs)}'")


if __name__ == "__main__":
    main()
