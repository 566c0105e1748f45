#!/usr/bin/env python3
"""Synthesise the synth_av corpus: synth_an4's sentences and eSpeak NG voices, with the talking mouth drawn at
25 fps from eSpeak NG's own phoneme events, written as Kaldi data dirs with lip-ROI arrays.

    python3 local/synthesize_av.py --seed 0 --num_train 1500 --num_dev 100 --num_test 150 --fs 16000 \
        --audio_dir downloads/synth_av --data_dir data --num_video 4

The audio side is egs2/synth_an4's plan (sentences, speakers, silences, level, noise floor: the same options give
the same sentences and speakers as synth_an4 with that seed), synthesised with phoneme events on. The video side:
each speaker has a face (speechllm.data.visemes.Face: skin tone, lip thickness and colour, mouth size, a mustache
for some male voices, head motion); each utterance's phones (eSpeak's, moved by the leading silence, the silences
as pauses) drive a coarticulated viseme trajectory rendered as 96 x 96 uint8 frames at 25 fps.

Writes, under --audio_dir: wav/<split>/<utt>.wav (16-bit mono at --fs), roi/<split>/<utt>.npy (frames x 96 x 96
uint8), phones/<split>/<utt>.txt (`start end phoneme` in seconds), video/test/<utt>.mp4 for the first utterance
of --num_video test speakers (the whole face, with sound), and plan.tsv (every setting: a rerun with the same
options reuses the files, one with other options into the same --audio_dir is refused). Under --data_dir:
train/dev/test with wav.scp, text, utt2spk, spk2utt, utt2num_samples, roi.scp, and test_video (those test
utterances with video.scp). A rerun with everything in place synthesises nothing and rewrites no file.
"""
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "synth_an4" / "speechllm1" / "local"))
import synthesize as synth_an4  # noqa: E402  (egs2/synth_an4/speechllm1/local/synthesize.py: plan and audio)

from speechllm.data.datadir import DataDir  # noqa: E402
from speechllm.data.video import write_video  # noqa: E402
from speechllm.data import visemes  # noqa: E402
from speechllm.synth import espeak  # noqa: E402
from speechllm.synth.corpus import claim_audio_dir, cpu_seconds, synthesize_all, wav_path, write_wav  # noqa: E402
from speechllm.synth.espeak import VARIANT_FAMILIES  # noqa: E402

SPLITS = synth_an4.SPLITS
VISUAL_VERSION = 1  # bump when the drawing, the visemes or the file layout change: old audio dirs are then refused
VIDEO_SET = "test_video"

# Set by build_corpus before the workers fork (they inherit it): speaker -> Face, and the utterances with video.
_FACES = {}
_VIDEO_UTTS = frozenset()


def parse_args(argv=None):
    parser = synth_an4.corpus_parser(__doc__, "downloads/synth_av",
                                     "fixes sentences, speakers, faces, audio and frames")
    parser.add_argument("--num_video", type=int, default=4,
                        help=f"test speakers whose first utterance is also an mp4 of the whole face "
                             f"(data dir {VIDEO_SET}, for utils/extract_lip_roi.sh); 0: none")
    args = synth_an4.check_corpus_args(parser, parser.parse_args(argv))
    if args.num_video < 0:
        parser.error(f"--num_video must be 0 or more, got {args.num_video}")
    return args


# ---------------------------------------------------------------- faces and the plan

def stable_seed(*parts) -> int:
    """A 64-bit seed from strings (Python's hash() differs between processes)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


def make_faces(seed, plan):
    """speaker -> Face, each from its own random stream (adding speakers leaves the others' faces alone)."""
    male_variants = {variant.lower() for variant in VARIANT_FAMILIES["male"]}
    faces = {}
    for utt in plan:
        if utt.speaker not in faces:
            variant = utt.voice.partition("+")[2].lower()
            rng = np.random.default_rng(stable_seed("synth_av", seed, "face", utt.speaker))
            faces[utt.speaker] = visemes.Face.draw(rng, male=variant in male_variants)
    return faces


def video_utterances(plan, count):
    """The first test utterance of each of the first `count` test speakers (in id order)."""
    first = {}
    for utt in sorted((u for u in plan if u.split == "test"), key=lambda u: u.id):
        first.setdefault(utt.speaker, utt.id)
    return frozenset(sorted(first.values())[:count])


def plan_text(plan, faces, video_utts, seed, fs) -> str:
    lines = [synth_an4.plan_text(plan, seed, fs).rstrip("\n"),
             f"# synth_av visual version {VISUAL_VERSION} coarticulation_tau {visemes.COARTICULATION_TAU}"]
    lines += [f"face {speaker} {face.as_text()}" for speaker, face in sorted(faces.items())]
    lines += [f"video {utt}" for utt in sorted(video_utts)]
    return "\n".join(lines) + "\n"


def media_path(audio_dir, kind, utt, suffix) -> str:
    return os.path.join(audio_dir, kind, utt.split, utt.id + suffix)


def save_atomically(path, write):
    """write(temp path) then rename: an interrupted run never leaves a partial file under the final name."""
    handle, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".partial.", suffix=Path(path).suffix)
    os.close(handle)
    try:
        write(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- one speaker (a fresh process)

def synthesize_speaker(job):
    """All of one speaker's utterances, in order (eSpeak's state must follow the same sequence every time).

    For each utterance the frames, phones and video are written before the wav: a wav on disk means the
    utterance is complete. Returns what speechllm.synth.corpus.synthesize_speaker returns."""
    utterances, audio_dir, fs = job
    engine = visemes.PhonemeESpeak()
    results, audio_seconds = [], 0.0
    before = cpu_seconds()
    for utt in utterances:
        engine.set_voice(utt.voice)
        engine.set_parameter("rate", utt.rate)
        engine.set_parameter("pitch", utt.pitch)
        engine.set_parameter("range", utt.pitch_range)
        engine.seed(utt.noise_seed)
        speech, phones = engine.synthesize_with_phones(espeak.spoken_form(utt.text))
        audio_seconds += len(speech) / engine.sample_rate
        samples = synth_an4.augment(synth_an4.resample(speech, engine.sample_rate, fs), fs, utt)
        path = wav_path(audio_dir, utt)
        written = not os.path.exists(path)
        if written:
            lead = round(utt.lead_s * fs) / fs  # synth_an4.augment pads this many samples before the speech
            phones = visemes.shift_phones(phones, lead, len(samples) / fs)
            write_visuals(audio_dir, utt, phones, samples, fs)
            write_wav(path, samples, fs)
        results.append((utt.id, len(samples), written))
    return "espeak", cpu_seconds() - before, audio_seconds, results


def write_visuals(audio_dir, utt, phones, samples, fs):
    trajectory = visemes.mouth_trajectory(phones, visemes.frame_count(len(samples), fs))
    face = _FACES[utt.speaker]
    frames = visemes.render_mouth(trajectory, face, seed=utt.noise_seed)
    save_atomically(media_path(audio_dir, "roi", utt, ".npy"), lambda temp: np.save(temp, frames))
    save_atomically(media_path(audio_dir, "phones", utt, ".txt"),
                    lambda temp: Path(temp).write_text(visemes.phones_text(phones)))
    if utt.id in _VIDEO_UTTS:
        faces = visemes.render_face(trajectory, face, seed=utt.noise_seed)
        # write_video writes to a temporary name and renames, as save_atomically does
        write_video(media_path(audio_dir, "video", utt, ".mp4"), faces, audio=samples / 32768.0, sample_rate=fs)


# ---------------------------------------------------------------- data dirs

def data_dir_files(utterances, audio_dir, frames):
    files = {"wav.scp": {}, "text": {}, "utt2spk": {}, "utt2num_samples": {}, "roi.scp": {}}
    for utt in utterances:
        files["wav.scp"][utt.id] = wav_path(audio_dir, utt)
        files["text"][utt.id] = utt.text
        files["utt2spk"][utt.id] = utt.speaker
        files["utt2num_samples"][utt.id] = str(frames[utt.id])
        files["roi.scp"][utt.id] = media_path(audio_dir, "roi", utt, ".npy")
    return files


def write_data_dirs(plan, audio_dir, data_dir, frames, video_utts) -> int:
    changed = 0
    for split in SPLITS:
        files = data_dir_files([u for u in plan if u.split == split], audio_dir, frames)
        changed += DataDir(Path(data_dir) / split, files).write_changed(Path(data_dir) / split)
    with_video = [utt for utt in plan if utt.id in video_utts]
    if with_video:
        files = data_dir_files(with_video, audio_dir, frames)
        files["video.scp"] = {utt.id: media_path(audio_dir, "video", utt, ".mp4") for utt in with_video}
        changed += DataDir(Path(data_dir) / VIDEO_SET, files).write_changed(Path(data_dir) / VIDEO_SET)
    return changed


# ---------------------------------------------------------------- main

def build_corpus(args):
    global _FACES, _VIDEO_UTTS
    counts = {"train": args.num_train, "dev": args.num_dev, "test": args.num_test}
    plan = synth_an4.make_plan(args.seed, counts, tuple(sorted(set(args.accents.split(",")))),
                               args.hold_out_variants)
    _FACES = make_faces(args.seed, plan)
    _VIDEO_UTTS = video_utterances(plan, args.num_video)
    audio_dir = Path(args.audio_dir)
    claim_audio_dir(audio_dir, plan_text(plan, _FACES, _VIDEO_UTTS, args.seed, args.fs))
    for kind in ("roi", "phones", "video"):
        for split in SPLITS:
            (audio_dir / kind / split).mkdir(parents=True, exist_ok=True)
    frames, written, _ = synthesize_all(plan, args.audio_dir, args.fs, args.nj, log=print, worker=synthesize_speaker)
    changed = write_data_dirs(plan, args.audio_dir, args.data_dir, frames, _VIDEO_UTTS)
    print(synth_an4.summary(plan, frames, args.fs))
    num_frames = sum(visemes.frame_count(frames[utt.id], args.fs) for utt in plan)
    print(f"video: {num_frames} frames of 96 x 96 at 25 fps, {len(_FACES)} faces "
          f"({sum(face.mustache > 0 for face in _FACES.values())} with a mustache), {len(_VIDEO_UTTS)} mp4 videos "
          f"of the whole face in {Path(args.data_dir) / VIDEO_SET}")
    print(f"files: {written} utterances synthesised and drawn, {len(plan) - written} reused from {args.audio_dir}; "
          f"{changed} data-dir files written")


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    try:
        espeak.check_variants_exist(espeak.import_loader().get_data_path())
        build_corpus(args)
    except (ImportError, RuntimeError) as err:
        sys.exit(f"{Path(__file__).name}: error: {err}")
    print(f"{time.time() - start:.1f} s with --nj {args.nj}")


if __name__ == "__main__":
    main()
