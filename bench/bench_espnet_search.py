"""Our batched search against ESPnet's own BatchBeamSearch on the same ESPnet ASRTask AED + CTC model.

    tools/venv/bin/python bench/bench_espnet_search.py [--model_dir egs2/synth_an4/speechllm1/exp/train_am]
        [--model_file valid.acc.ave.pth] [--wav_scp egs2/synth_an4/speechllm1/dump/test/wav.scp] [--utts 150]
        [--beam_size 4] [--ctc_weight 0.3] [--batch_sizes 1 8]

ESPnet decodes one utterance at a time (``espnet2.bin.asr_inference.Speech2Text``: BatchBeamSearch over its
decoder and CTCPrefixScorer, maxlenratio 1.0, no length normalisation); ours decodes the same waveforms with the same
weights, ESPnet's end rule (``end_rule: espnet``) and raw log-probability ranking, one at a time and in batches.
Prints throughput (utterances/s, model loading excluded) and the ratio, and compares the 1-best token ids with
ESPnet's: each disagreement is listed with both hypotheses' scores under the same model, recomputed in one pass,
so a reader can see whether it is a search difference (one side found a better-scoring hypothesis) or a tie.
Uses 1 thread unless OMP_NUM_THREADS says otherwise, like the recipe's decoding jobs. Runs from the recipe dir.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from speechllm.data.datadir import read_kv  # noqa: E402
from speechllm.decoding.options import DecodingOptions  # noqa: E402
from speechllm.speech2text import Speech2Text  # noqa: E402


def joint_score(am, speech, ids, ctc_weight: float) -> float:
    """(1 - w) log P_decoder(ids + EOS) + w log P_CTC(ids) of one utterance, in one pass."""
    memory = speech.encoded[0, :int(speech.encoded_lengths[0])]
    ys_in = torch.tensor([[am.sos_id, *ids]])
    logits, _ = am.decoder(memory[None], torch.tensor([memory.size(0)]), ys_in, torch.tensor([ys_in.size(1)]))
    decoder = torch.log_softmax(logits[0], -1).gather(1, torch.tensor([*ids, am.eos_id])[:, None]).sum().item()
    logp = am.model.ctc.log_softmax(memory[None]).transpose(0, 1)
    ctc = -torch.nn.functional.ctc_loss(logp, torch.tensor([ids], dtype=torch.long), torch.tensor([memory.size(0)]),
                                        torch.tensor([len(ids)]), blank=0, reduction="sum").item()
    return (1 - ctc_weight) * decoder + ctc_weight * ctc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default="egs2/synth_an4/speechllm1/exp/train_am")
    parser.add_argument("--model_file", default="valid.acc.ave.pth")
    parser.add_argument("--wav_scp", default="egs2/synth_an4/speechllm1/dump/test/wav.scp")
    parser.add_argument("--utts", type=int, default=150)
    parser.add_argument("--beam_size", type=int, default=4)
    parser.add_argument("--ctc_weight", type=float, default=0.3)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    model_dir, wav_scp = Path(args.model_dir).resolve(), Path(args.wav_scp).resolve()
    os.chdir(model_dir.parents[1])  # the recipe dir: the config names the BPE model relative to it
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    config, model_file = str(model_dir / "config.yaml"), str(model_dir / args.model_file)

    keys, waves = [], []
    for key, path in list(read_kv(wav_scp).items())[: args.utts]:
        keys.append(key)
        waves.append(torch.from_numpy(sf.read(path, dtype="float32")[0]))
    audio_seconds = sum(w.numel() for w in waves) / 16000
    print(f"{len(waves)} utterances, {audio_seconds:.1f} s of audio, {torch.get_num_threads()} thread(s), "
          f"beam {args.beam_size}, ctc_weight {args.ctc_weight}")

    from espnet2.bin.asr_inference import Speech2Text as ESPnetSpeech2Text

    espnet = ESPnetSpeech2Text(asr_train_config=config, asr_model_file=model_file, beam_size=args.beam_size,
                               ctc_weight=args.ctc_weight, lm_weight=0.0, penalty=0.0, maxlenratio=1.0,
                               minlenratio=0.0, nbest=1, batch_size=1)
    search_kind = type(espnet.beam_search).__name__
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
                              max_length_ratio=1.0, end_rule="espnet")
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
                mine_score, their_score = (joint_score(ours.model, speech, ids, args.ctc_weight)
                                           for ids in (mine, theirs))
                print(f"  {key}: ours {mine_score:.3f} '{ours.tokenizer.decode(mine)}' | "
                      f"ESPnet {their_score:.3f} '{ours.tokenizer.decode(theirs)}'")


if __name__ == "__main__":
    main()
