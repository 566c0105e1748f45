"""Room impulse responses and additive noise on the training speech, by ESPnet's own ``CommonPreprocessor``.

The options are ESPnet's ASR task's, with its meanings (``--rir_scp``, ``--rir_apply_prob``, ``--noise_scp``,
``--noise_apply_prob``, ``--noise_db_range``, ``--short_noise_thres``): a list of audio files (a wav.scp, or one path
a line); each training utterance is convolved with a random impulse response with probability ``rir_apply_prob``,
then mixed with a random noise segment at an SNR drawn from ``noise_db_range`` ("low_high" dB) with probability
``noise_apply_prob``. Validation and decoding read the audio as it is.

ESPnet reads each listed file only when it draws it, deep inside a data-loader worker: a missing file would stop
training hours in with a bare soundfile error. Here every listed file is checked when training starts, and a bad
line is named with its file and line number.
"""
from __future__ import annotations

import argparse
from typing import Optional

import numpy as np
import soundfile

from speechllm.data.datadir import DataDirError, Problem, die_on

OPTIONS = ("rir_scp", "rir_apply_prob", "noise_scp", "noise_apply_prob", "noise_db_range", "short_noise_thres")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    """ESPnet's ASR task's augmentation options, with its defaults."""
    group.add_argument("--rir_scp", type=str, default=None,
                       help="room impulse responses: a wav.scp (or one audio path a line) to convolve the training "
                            "speech with")
    group.add_argument("--rir_apply_prob", type=float, default=1.0, help="share of training utterances given an RIR")
    group.add_argument("--noise_scp", type=str, default=None,
                       help="noise recordings: a wav.scp (or one audio path a line) to add to the training speech")
    group.add_argument("--noise_apply_prob", type=float, default=1.0,
                       help="share of training utterances given noise")
    group.add_argument("--noise_db_range", type=str, default="3_10",
                       help="SNR range of the added noise in dB, 'low_high' (or one value)")
    group.add_argument("--short_noise_thres", type=float, default=0.5,
                       help="a noise shorter than this share of the utterance is repeated, longer ones are cut")


def check_audio_list(scp: str, option: str) -> None:
    """Every audio path of a wav.scp or a plain list is readable; problems name the file and line."""
    readable, problems = 0, []
    try:
        lines = open(scp, encoding="utf-8").read().splitlines()
    except OSError as error:
        raise DataDirError([Problem(scp, None, f"cannot be read ({error.strerror})",
                                    f"give --{option} an existing wav.scp or list of audio files")]) from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2:
            problems.append(Problem(scp, number, f"expected '<id> <path>' or '<path>', got {len(fields)} fields",
                                    "ESPnet reads these files with soundfile: list plain audio paths, no pipes"))
            continue
        path = fields[-1]
        try:
            soundfile.info(path)
        except (RuntimeError, OSError) as error:  # soundfile raises RuntimeError (LibsndfileError) for bad files
            problems.append(Problem(scp, number, f"'{path}' is not a readable audio file ({error})",
                                    "fix or remove the line"))
            continue
        readable += 1
    if not readable and not problems:
        problems.append(Problem(scp, None, "lists no audio file", f"give --{option} a non-empty list"))
    die_on(problems)


class SpeechAugmentation:
    """``__call__(speech)``: the mono training waveform, convolved and/or mixed as configured (ESPnet's code)."""

    def __init__(self, rir_scp: Optional[str] = None, rir_apply_prob: float = 1.0, noise_scp: Optional[str] = None,
                 noise_apply_prob: float = 1.0, noise_db_range: str = "3_10", short_noise_thres: float = 0.5):
        from espnet2.train.preprocessor import CommonPreprocessor

        for name, value in (("rir_apply_prob", rir_apply_prob), ("noise_apply_prob", noise_apply_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"--{name} must be in [0, 1], got {value}")
        if rir_scp:
            check_audio_list(rir_scp, "rir_scp")
        if noise_scp:
            check_audio_list(noise_scp, "noise_scp")
        try:
            self.espnet = CommonPreprocessor(train=True, rir_scp=rir_scp or None, rir_apply_prob=rir_apply_prob,
                                             noise_scp=noise_scp or None, noise_apply_prob=noise_apply_prob,
                                             noise_db_range=noise_db_range, short_noise_thres=short_noise_thres)
        except ValueError as error:  # its message for a bad range names no option
            raise ValueError(f"--noise_db_range '{noise_db_range}': {error}; give 'low_high' in dB, e.g. 5_20") \
                from None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Optional["SpeechAugmentation"]:
        """None when neither --rir_scp nor --noise_scp is given."""
        if not (getattr(args, "rir_scp", None) or getattr(args, "noise_scp", None)):
            return None
        return cls(**{name: getattr(args, name) for name in OPTIONS})

    def __call__(self, speech: np.ndarray) -> np.ndarray:
        out = self.espnet._speech_process({"speech": speech.astype(np.float64)})["speech"]
        return np.asarray(out, dtype=np.float32).reshape(-1)  # ESPnet returns (samples, 1) for mono input
