#!/usr/bin/env python3
"""Where the LLM looks: its self-attention from the text positions over the prompt and the speech, as a PNG heatmap
(the picture of Figure 1 of Schmitt et al., "LLMs and Speech: Integration vs. Combination").

The model reads one utterance's speech and its reference transcript (teacher forcing); each row is the query
position that predicts one transcript token (the last prefix position predicts the first token), each column a key
position of ``[BOS, prompt, speech, suffix]``, averaged over heads and over the chosen layers.

    python -m speechllm.bin.plot_attention --train_config exp/m/config.yaml --model_file exp/m/valid.acc.ave.pth \
        --data_path_and_name_and_type dump/frontend/test/feats.scp,speech,kaldi_ark --text dump/test/text \
        --utt UTT_ID --out exp/m/plots/attention_UTT_ID.png [--layers all|first|middle|last|0,5,9]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Sequence

import torch


def pick_layers(spec: str, count: int) -> List[int]:
    named = {"all": range(count), "first": range(count // 3), "middle": range(count // 3, 2 * count // 3),
             "last": range(2 * count // 3, count)}
    if spec in named:
        return list(named[spec])
    layers = [int(x) for x in spec.split(",")]
    bad = [x for x in layers if not 0 <= x < count]
    if bad:
        raise ValueError(f"--layers {spec}: {bad} out of range; the LLM has layers 0..{count - 1}")
    return layers


@torch.no_grad()
def text_attention(model, speech: torch.Tensor, token_ids: Sequence[int], layers: str = "all"):
    """(attention (text positions x prefix positions), segment lengths (head, speech, suffix), layers used)."""
    if model.cross_attention is not None:
        raise ValueError("plot_attention draws the LLM's self-attention over a speech prefix; this model reads the "
                         "speech through cross-attention blocks (model_conf.interface: cross_attention)")
    model.eval()
    model.llm.set_attn_implementation("eager")  # the fused kernels do not return attention weights
    lengths = torch.tensor([speech.size(0)])
    encoded, encoded_lengths = model.encode(speech[None], lengths)
    speech_embeds, speech_lengths = model.speech_embeddings(encoded, encoded_lengths)
    prefix, mask = model.speech_prefix(speech_embeds, speech_lengths)
    ids = torch.tensor([list(token_ids)], dtype=torch.long)
    inputs = torch.cat([prefix, model.embed_tokens(ids)], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
    positions = model.positions_with_text(mask, speech_lengths, torch.tensor([ids.size(1)]), ids.size(1))
    out = model.llm(inputs_embeds=inputs, attention_mask=full_mask, position_ids=positions, output_attentions=True)
    chosen = pick_layers(layers, len(out.attentions))
    attention = torch.stack([out.attentions[i][0].float().mean(0) for i in chosen]).mean(0)  # (Q, K)
    width = prefix.size(1)
    rows = attention[width - 1: width - 1 + len(token_ids)]  # the positions that predict each text token
    segments = (model.prompt_ids.numel(), int(speech_lengths[0]), model.prompt_suffix_ids.numel())
    return rows[:, :width], segments, chosen


def plot(attention: torch.Tensor, segments, row_labels: List[str], column_labels: List[str], title: str,
         out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = attention.shape
    fig, ax = plt.subplots(figsize=(max(6.0, columns * 0.12 + 2), max(3.0, rows * 0.25 + 1.5)))
    image = ax.imshow(attention.numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
    head, speech, _ = segments
    for boundary in (head - 0.5, head + speech - 0.5):
        ax.axvline(boundary, color="white", linewidth=1.0)
    ax.set_yticks(range(rows), row_labels, fontsize=7)
    ticks = [i for i in range(columns) if i < head or i >= head + speech]
    ax.set_xticks(ticks, [column_labels[i] for i in ticks], fontsize=6, rotation=90)
    ax.text(head + speech / 2, -0.8, f"speech ({speech} embeddings)", ha="center", va="bottom", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set(xlabel="key position: BOS + prompt | speech | suffix", ylabel="query: predicts token")
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_config", required=True)
    parser.add_argument("--model_file", help="trained weights (none: the untrained model)")
    parser.add_argument("--data_path_and_name_and_type", required=True,
                        help="SCP,speech,TYPE as in decoding (sound or kaldi_ark)")
    parser.add_argument("--text", required=True, help="Kaldi text file holding the utterance's transcript")
    parser.add_argument("--utt", required=True, help="utterance id")
    parser.add_argument("--layers", default="all", help="all, first, middle, last (thirds) or indices 0,5,9")
    parser.add_argument("--out", type=Path, required=True, help="the PNG file to write")
    args = parser.parse_args(argv)

    from espnet2.train.dataset import ESPnetDataset

    from speechllm.data.datadir import read_kv
    from speechllm.models.llm import token_ids
    from speechllm.tasks.speech_llm import SpeechLLMTask, load_label_tokenizer

    path, name, kind = args.data_path_and_name_and_type.split(",")
    texts = read_kv(args.text)
    if args.utt not in texts:
        print(f"plot_attention: error: {args.text} has no utterance '{args.utt}'", file=sys.stderr)
        return 1
    model, train_args = SpeechLLMTask.build_model_from_file(args.train_config, None, "cpu")
    if args.model_file:
        model.load_state_dict(torch.load(args.model_file, map_location="cpu", weights_only=True), strict=True)
    speech = torch.as_tensor(ESPnetDataset([(path, name, kind)])[args.utt][1][name]).float()
    tokenizer = load_label_tokenizer(train_args)
    ids = list(token_ids(tokenizer, texts[args.utt])) + [tokenizer.eos_token_id]
    attention, segments, layers = text_attention(model, speech, ids, args.layers)
    prefix_ids = model.prompt_ids.tolist()
    suffix_ids = model.prompt_suffix_ids.tolist()
    columns = ([repr(t)[1:-1] for t in tokenizer.convert_ids_to_tokens(prefix_ids)]
               + [f"s{i}" for i in range(segments[1])]
               + [repr(t)[1:-1] for t in tokenizer.convert_ids_to_tokens(suffix_ids)])
    rows = [repr(t)[1:-1] for t in tokenizer.convert_ids_to_tokens(ids)]
    title = f"{args.utt} ({Path(args.model_file).name if args.model_file else 'untrained'}, layers {args.layers})"
    print(plot(attention, segments, rows, columns, title, args.out))
    share = attention[:, segments[0]: segments[0] + segments[1]].sum(-1).mean().item()
    print(f"mean attention share on the speech: {share:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
