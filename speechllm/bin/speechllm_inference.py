#!/usr/bin/env python3
"""Decode speech with a trained speech LLM; writes ESPnet's layout ``OUT/{n}best_recog/{text,token,token_int,score}``.

    python -m speechllm.bin.speechllm_inference --train_config exp/x/config.yaml --model_file exp/x/valid.loss.ave.pth \
        --data_path_and_name_and_type dump/raw/test/wav.scp,speech,sound --output_dir exp/x/decode/test \
        [--config conf/decode.yaml] [--key_file keys.1.scp] [--batch_size 4] [--ngpu 0] [--segment_seconds 20]
    (or --packed_model exp/x/packed.zip instead of --train_config/--model_file)

Recordings longer than --segment_seconds are cut at pauses (speechllm.decoding.segment), decoded in batches and
their texts joined: never truncated.

An audio-visual model decodes the task ``--task asr|vsr|avsr`` (a decoding option); vsr and avsr read the lip ROIs
as the data name ``video`` (``--data_path_and_name_and_type dump/test/roi.scp,video,npy``) and decode each
batch whole (its recordings are not segmented: their lip ROIs would have to be cut at the same times).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence, Tuple

from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.utils import config_argparse
from espnet2.utils.types import str2triple_str, str_or_none

from speechllm.data.progress import Progress
from speechllm.decoding.options import DecodingOptions
from speechllm.exp_lock import lock_exp_dir
from speechllm.speech2text import Speech2Text
from speechllm.tasks.speech_llm import FloatLipROIs, SpeechLLMTask


def inference(
    output_dir: str,
    data_path_and_name_and_type: Sequence[Tuple[str, str, str]],
    train_config: Optional[str],
    model_file: Optional[str],
    packed_model: Optional[str],
    key_file: Optional[str],
    options: DecodingOptions,
    batch_size: int = 1,
    ngpu: int = 0,
    dtype: str = "float32",
    num_workers: int = 0,
    segment_seconds: float = 0.0,
    vad: str = "auto",
) -> None:
    if packed_model:
        if train_config or model_file:
            raise ValueError("give either --packed_model or --train_config/--model_file, not both")
        from speechllm.bin.pack import unpack

        train_config, model_file = unpack(packed_model)
    elif not train_config:
        raise ValueError("--train_config (with --model_file) or --packed_model is required")
    device = "cuda" if ngpu > 0 else "cpu"
    speech2text = Speech2Text(train_config, model_file, options, device=device, dtype=dtype,
                              segment_seconds=segment_seconds or None, vad=vad, batch_size=batch_size)
    loader = SpeechLLMTask.build_streaming_iterator(
        data_path_and_name_and_type, dtype=dtype, batch_size=batch_size, key_file=key_file,
        num_workers=num_workers, preprocess_fn=FloatLipROIs(),
        collate_fn=SpeechLLMTask.build_collate_fn(argparse.Namespace(), False), inference=True,
    )
    listed = key_file or data_path_and_name_and_type[0][0]  # one utterance per line
    with open(listed, encoding="utf-8") as f:
        total = sum(1 for line in f if line.strip())
    progress = Progress(total, f"decode {output_dir}")
    names = [name for _, name, _ in data_path_and_name_and_type]
    if speech2text.is_audio_visual and options.task != "asr" and "video" not in names:
        raise ValueError(f"decoding task {options.task} of an audio-visual model reads the lip ROIs: add "
                         "--data_path_and_name_and_type <data dir>/roi.scp,video,npy")
    if "video" in names and not speech2text.is_audio_visual:
        raise ValueError("--data_path_and_name_and_type names 'video' but the model is audio-only (trained without "
                         "visual_injection_conf); leave the video out")
    with DatadirWriter(output_dir) as writer:
        for keys, batch in loader:
            speech, lengths = batch["speech"], batch["speech_lengths"]
            if "video" in batch:  # audio-visual: the batch whole, in the decoding task
                nbests = [[speech2text.transcript(h) for h in hyps] for hyps in speech2text.decode(
                    speech, lengths, video=batch["video"], video_lengths=batch["video_lengths"])]
            elif speech.dim() == 2:  # waveforms: long recordings are cut into segments (short ones decode as a batch)
                nbests = speech2text.transcribe([speech[i, :lengths[i]] for i in range(len(keys))])
            else:  # dumped frontend outputs: already within the frontend's window (utils/dump_frontend.sh)
                nbests = [[speech2text.transcript(h) for h in hyps] for hyps in speech2text.decode(speech, lengths)]
            for key, transcripts in zip(keys, nbests):
                for rank, t in enumerate(transcripts, 1):
                    out = writer[f"{rank}best_recog"]
                    out["text"][key] = t.text
                    out["token_int"][key] = " ".join(map(str, t.token_ids))
                    out["token"][key] = " ".join(speech2text.tokenizer.convert_ids_to_tokens(t.token_ids))
                    out["score"][key] = f"{t.logprob:.4f}"
            progress.update(len(keys))
    progress.close()


def get_parser() -> argparse.ArgumentParser:
    parser = config_argparse.ArgumentParser(description=__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log_level", default="INFO", type=lambda x: x.upper())
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--ngpu", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--data_path_and_name_and_type", type=str2triple_str, required=True, action="append")
    parser.add_argument("--key_file", type=str_or_none, help="decode only these utterance ids")
    parser.add_argument("--train_config", type=str_or_none)
    parser.add_argument("--model_file", type=str_or_none)
    parser.add_argument("--packed_model", type=str_or_none, help="archive written by speechllm.bin.pack")
    parser.add_argument("--segment_seconds", type=float, default=0.0,
                        help="recordings longer than this are cut at pauses and their segments' texts joined "
                             "(0: the model's longest training utterance, within the frontend's window and half the "
                             "LLM's context)")
    parser.add_argument("--vad", default="auto", choices=["auto", "silero", "none"],
                        help="where long recordings are cut: Silero VAD's pauses (auto: when installed) or "
                             "low-energy points (none)")
    group = parser.add_argument_group("Decoding (speechllm.decoding.options.DecodingOptions)")
    defaults = DecodingOptions()
    for name, value in vars(defaults).items():
        group.add_argument(f"--{name}", type=type(value), default=value)
    return parser


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    fields = vars(DecodingOptions()).keys()
    options = DecodingOptions(**{name: getattr(args, name) for name in fields})
    with lock_exp_dir(args.output_dir, "decoding", exit_on_busy=True):  # a second decoding into it is refused
        inference(
            output_dir=args.output_dir, data_path_and_name_and_type=args.data_path_and_name_and_type,
            train_config=args.train_config, model_file=args.model_file, packed_model=args.packed_model,
            key_file=args.key_file, options=options, batch_size=args.batch_size, ngpu=args.ngpu, dtype=args.dtype,
            num_workers=args.num_workers, segment_seconds=args.segment_seconds, vad=args.vad,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
