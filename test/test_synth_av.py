"""The synthetic audio-visual corpus (egs2/synth_av/speechllm1/local/, speechllm/data/visemes.py) and the noisy test
sets (speechllm/data/snr_mix.py, utils/make_snr_sets.sh)."""
import filecmp
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechllm.data import snr_mix, visemes
from speechllm.data.datadir import read_kv
from speechllm.data.validate import MediaCheck, validate_data_dir
from speechllm.data.video import ROI_FPS, ROI_SIZE, load_roi

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "egs2" / "synth_av" / "speechllm1" / "local"
TINY = ["--num_train", "40", "--num_dev", "8", "--num_test", "8", "--num_video", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
       "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

needs_espeak = pytest.mark.skipif(importlib.util.find_spec("espeakng_loader") is None,
                                  reason="espeakng-loader is not installed (pip install espeakng-loader, or "
                                         "tools/install.sh)")


def build(workdir: Path, *options):
    """local/synthesize_av.py run in workdir as data.sh runs it; returns its stdout."""
    workdir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, str(LOCAL / "synthesize_av.py"), "--nj", "2", *TINY, *options],
                          cwd=workdir, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def corpus_files(workdir: Path):
    return sorted(p.relative_to(workdir) for p in workdir.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if importlib.util.find_spec("espeakng_loader") is None:
        pytest.skip("espeakng-loader is not installed (pip install espeakng-loader, or tools/install.sh)")
    workdir = tmp_path_factory.mktemp("synth_av") / "seed0"
    return workdir, build(workdir)


def read_wav(path) -> np.ndarray:
    samples, fs = sf.read(path, dtype="float64")
    assert fs == 16000
    return samples


# ------------------------------------------------------------------ phoneme events and timings

@needs_espeak
def test_phoneme_events_end_with_the_audio():
    """eSpeak's own events, in a fresh process (eSpeak keeps state): the phones are contiguous, start at the first
    phoneme and end on the last sample, where eSpeak's end-of-message event also is."""
    script = ("import json; from speechllm.data.visemes import PhonemeESpeak\n"
              "e = PhonemeESpeak(); e.set_voice('en-us+m3')\n"
              "audio, phones = e.synthesize_with_phones('stop march fifth')\n"
              "print(json.dumps([len(audio), e.sample_rate, e.end_sample,\n"
              "                  [[p.name, p.start, p.end] for p in phones]]))")
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    length, rate, end_sample, phones = json.loads(done.stdout)
    assert end_sample == length
    assert phones[-1][2] == pytest.approx(length / rate)
    assert all(a[2] == b[1] for a, b in zip(phones, phones[1:]))
    names = [name.lstrip("',") for name, _, _ in phones]
    assert names[0] == "s" and names[2:4] == ["0", "p"] and "m" in names and "f" in names, names


def segment_db(samples, start, end, fs=16000):
    part = samples[int(start * fs):int(end * fs)]
    return 10 * math.log10(np.mean(np.square(part)) + 1e-12)


@needs_espeak
def test_phone_times_match_the_written_audio(corpus):
    """After resampling and the added silence: the phones cover the wav exactly, the added silence is quiet, the
    vowels loud, and the speech starts where the first phoneme does (energy onset within 25 ms)."""
    workdir, _ = corpus
    data = workdir / "data" / "test"
    wavs, rois = read_kv(data / "wav.scp"), read_kv(data / "roi.scp")
    checked = 0
    for utt, wav in wavs.items():
        samples = read_wav(workdir / wav)
        phones = visemes.read_phones(workdir / wav.replace("/wav/", "/phones/").replace(".wav", ".txt"))
        assert phones[0].start == 0 and phones[-1].end == pytest.approx(len(samples) / 16000, abs=1e-4)
        assert all(a.end == b.start for a, b in zip(phones, phones[1:]))
        lead, trail = phones[0], phones[-1]
        assert lead.name == trail.name == "_"
        vowels = [p for p in phones if visemes.visemes_of(p.name)[0] in ("open", "mid_front", "open_back_round")]
        if vowels:
            loudest = max(segment_db(samples, p.start, p.end) for p in vowels)
            assert loudest - segment_db(samples, lead.start, lead.end) > 25, utt
            assert loudest - segment_db(samples, trail.start + 0.05, trail.end) > 25, utt
        frame = 160  # 10 ms
        energy = np.array([np.mean(np.square(samples[i:i + frame])) for i in range(0, len(samples) - frame, frame)])
        onset = np.argmax(energy > energy.max() * 10 ** -3.5) * frame / 16000  # 35 dB below the loudest frame
        assert abs(onset - phones[1].start) < 0.025, (utt, onset, phones[1])
        assert len(load_roi(str(workdir / rois[utt]))) == visemes.frame_count(len(samples), 16000)
        checked += 1
    assert checked == 8


# ------------------------------------------------------------------ visemes and frames

FACE = visemes.Face(skin=160.0, lip_contrast=40.0, half_width=22.0, upper_lip=5.0, lower_lip=7.0, max_open=20.0,
                    mouth_y=48.0, nose_gap=17.0, chin_gap=20.0, mustache=0.0, light=0.0, jitter=1.0)


def frames_of(phones, seconds, face=FACE, seed=0):
    trajectory = visemes.mouth_trajectory(phones, round(seconds * ROI_FPS))
    return trajectory, visemes.render_mouth(trajectory, face, seed)


def dark_mouth_pixels(frame):
    """Pixels of the mouth opening (far darker than skin and lips) in the box around the mouth."""
    box = frame[40:80, 20:76]
    return int(np.count_nonzero(box < 70))


def test_open_vowel_and_bilabial_closure_look_different():
    P = visemes.Phone
    phones = [P("_", 0, 0.2), P("m", 0.2, 0.36), P("'a", 0.36, 0.6), P("b", 0.6, 0.76), P("u:", 0.76, 1.0),
              P("_", 1.0, 1.2)]
    trajectory, frames = frames_of(phones, 1.2)
    assert frames.shape == (30, ROI_SIZE, ROI_SIZE) and frames.dtype == np.uint8
    at = {name: round(t * ROI_FPS - 0.5) for name, t in (("silence", 0.1), ("m", 0.28), ("a", 0.48), ("b", 0.68),
                                                        ("u", 0.88))}
    assert trajectory["open"][at["a"]] > 0.6 and trajectory["open"][at["m"]] == 0 == trajectory["open"][at["b"]]
    assert trajectory["round"][at["u"]] > 0.8 > 0.2 > trajectory["round"][at["a"]]
    open_pixels = dark_mouth_pixels(frames[at["a"]])
    assert open_pixels > 200, open_pixels
    for closed in ("silence", "m", "b"):
        assert dark_mouth_pixels(frames[at[closed]]) < open_pixels / 10, closed
    difference = np.abs(frames[at["a"]].astype(int) - frames[at["m"]]).mean()
    jitter_only = np.abs(frames[at["m"]].astype(int) - frames[at["b"]]).mean()
    assert difference > 3 * jitter_only, (difference, jitter_only)


def test_coarticulation_rounds_a_consonant_before_a_rounded_vowel():
    """/k/ has no lip shape of its own: before /u:/ it is rounded, before /i:/ spread."""
    P = visemes.Phone
    before_u = visemes.mouth_trajectory([P("_", 0, 0.2), P("k", 0.2, 0.32), P("u:", 0.32, 0.6)], 15)
    before_i = visemes.mouth_trajectory([P("_", 0, 0.2), P("k", 0.2, 0.32), P("i:", 0.32, 0.6)], 15)
    k = round(0.3 * ROI_FPS - 0.5)
    assert before_u["round"][k] > 0.5 > before_i["round"][k]
    assert before_i["spread"][k] > 0.5 > before_u["spread"][k]


def test_faces_and_seeds_change_the_frames_deterministically():
    phones = [visemes.Phone("_", 0, 0.2), visemes.Phone("'a", 0.2, 0.6), visemes.Phone("_", 0.6, 0.8)]
    _, first = frames_of(phones, 0.8, seed=1)
    _, again = frames_of(phones, 0.8, seed=1)
    _, other_seed = frames_of(phones, 0.8, seed=2)
    other_face = visemes.Face.draw(np.random.default_rng(5))
    _, other_look = frames_of(phones, 0.8, face=other_face, seed=1)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other_seed.tobytes()
    assert np.abs(first.astype(int) - other_look).mean() > 5


def test_unknown_phonemes_fall_back_by_their_first_letter():
    assert visemes.visemes_of("'aI") == ("open", "close_front")
    assert visemes.visemes_of(",i:") == ("close_front",)
    assert visemes.visemes_of("y") == ("alveolar",) and visemes.visemes_of("E2") == ("mid_central",)


# ------------------------------------------------------------------ the corpus: data dirs, determinism, reruns

@needs_espeak
def test_data_dirs_validate_with_their_media(corpus):
    workdir, stdout = corpus
    os.chdir(workdir)  # the scp files hold paths relative to the recipe dir
    try:
        for name in ("train", "dev", "test", "test_video"):
            problems = validate_data_dir(Path("data") / name, media=MediaCheck())
            assert [p for p in problems if p.severity == "error"] == [], name
    finally:
        os.chdir(REPO)
    video = read_kv(workdir / "data" / "test_video" / "video.scp")
    assert len(video) == 1 and set(video) <= set(read_kv(workdir / "data" / "test" / "utt2spk"))
    train_speakers = set(read_kv(workdir / "data" / "train" / "utt2spk").values())
    assert train_speakers.isdisjoint(read_kv(workdir / "data" / "test" / "utt2spk").values())
    assert "56 utterances synthesised and drawn, 0 reused" in stdout


@needs_espeak
def test_same_seed_same_bytes_and_a_rerun_does_nothing(corpus, tmp_path):
    workdir, _ = corpus
    copy = tmp_path / "again"
    build(copy, "--nj", "1")  # the last --nj wins: one process instead of two must not change a byte
    files = corpus_files(workdir)
    assert files == corpus_files(copy)
    assert len(files) > 100
    _, mismatch, errors = filecmp.cmpfiles(workdir, copy, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []
    before = {f: (workdir / f).stat().st_mtime_ns for f in files}
    stdout = build(workdir)
    assert "0 utterances synthesised and drawn, 56 reused" in stdout and "0 data-dir files written" in stdout
    assert before == {f: (workdir / f).stat().st_mtime_ns for f in files}


@needs_espeak
def test_other_options_into_the_same_audio_dir_are_refused(corpus, tmp_path):
    workdir, _ = corpus
    done = subprocess.run([sys.executable, str(LOCAL / "synthesize_av.py"), *TINY, "--seed", "3", "--audio_dir",
                           str(workdir / "downloads/synth_av"), "--data_dir", str(tmp_path / "data")],
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "records a different corpus" in done.stderr


# ------------------------------------------------------------------ noisy test sets

def measured_snr(source_wav, mixed_wav, report_line, over="whole"):
    """The SNR of a written mixture: its noise is the mixture (un-scaled) minus the clean speech."""
    _, _, _, scale, _ = report_line.split()
    clean = read_wav(source_wav)
    mixture = read_wav(mixed_wav) / float(scale)
    noise = mixture - clean
    return 10 * math.log10(snr_mix.speech_power(clean, 16000, over) / np.mean(np.square(noise)))


@needs_espeak
@pytest.mark.parametrize("noise_kind", ["babble", "noise_list"])
def test_snr_sets_hit_the_snr_and_are_deterministic(corpus, tmp_path, noise_kind):
    workdir, _ = corpus
    os.chdir(workdir)
    try:
        noise = "babble"
        over = "whole"
        if noise_kind == "noise_list":
            over = "active"
            rng = np.random.default_rng(0)
            hum = 0.3 * np.sin(2 * np.pi * 120 * np.arange(8000) / 16000) + 0.05 * rng.standard_normal(8000)
            sf.write(tmp_path / "hum.wav", hum, 16000, subtype="PCM_16")  # 0.5 s: looped under longer speech
            sf.write(tmp_path / "hiss.wav", 0.1 * rng.standard_normal(48000), 48000, subtype="PCM_16")  # resampled
            (tmp_path / "noise.scp").write_text(f"hiss {tmp_path / 'hiss.wav'}\nhum {tmp_path / 'hum.wav'}\n")
            noise = str(tmp_path / "noise.scp")
        args = ["--snrs", "clean 10 0 -5", "--snr_over", over, "--data_out", str(tmp_path / "data")]
        assert snr_mix.main([*args, "data/test", noise, str(tmp_path / "dump")]) == 0
        source = read_kv("data/test/wav.scp")
        assert read_kv(tmp_path / "data/test_clean/wav.scp") == source
        for snr in ("10", "0", "-5"):
            out = tmp_path / "data" / f"test_snr{snr}"
            assert validate_data_dir(out, media=MediaCheck()) == []
            for name in ("text", "utt2spk", "roi.scp", "utt2num_samples"):
                assert (out / name).read_text() == Path("data/test", name).read_text()
            report = read_kv(tmp_path / "dump" / f"test_snr{snr}" / "mix_report.txt")
            mixed = read_kv(out / "wav.scp")
            assert set(mixed) == set(source) == set(report)
            for utt in source:
                assert abs(measured_snr(source[utt], mixed[utt], report[utt], over) - float(snr)) < 0.1, utt
                assert len(read_wav(mixed[utt])) == len(read_wav(source[utt]))
        # Same seed: the same bytes; the same noise segment at every SNR.
        assert snr_mix.main([*args, "--data_out", str(tmp_path / "data2"), "data/test", noise,
                             str(tmp_path / "dump2")]) == 0
        for snr in ("10", "0", "-5"):
            names = [p.name for p in (tmp_path / "dump" / f"test_snr{snr}" / "wav").iterdir()]
            _, mismatch, errors = filecmp.cmpfiles(tmp_path / "dump" / f"test_snr{snr}" / "wav",
                                                   tmp_path / "dump2" / f"test_snr{snr}" / "wav", names, shallow=False)
            assert mismatch == [] and errors == []
        def noise_sources(snr):
            report = (tmp_path / "dump" / f"test_snr{snr}" / "mix_report.txt").read_text()
            return [line.split()[-1] for line in report.splitlines()]

        assert noise_sources("10") == noise_sources("0")
        before = {p: p.stat().st_mtime_ns for p in (tmp_path / "dump").rglob("*.wav")}
        assert snr_mix.main([*args, "data/test", noise, str(tmp_path / "dump")]) == 0  # a rerun rewrites nothing
        assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "dump").rglob("*.wav")}
    finally:
        os.chdir(REPO)


@needs_espeak
def test_snr_set_bad_input_is_named_with_the_fix(corpus, tmp_path, capsys):
    workdir, _ = corpus
    os.chdir(workdir)
    try:
        def fails(*argv):
            assert snr_mix.main(list(argv)) == 1
            return capsys.readouterr().err

        dump = str(tmp_path / "dump")
        err = fails("data/test", str(tmp_path / "absent.scp"), dump)
        assert f"{tmp_path / 'absent.scp'}: does not exist. Fix: give a wav.scp of noise recordings" in err
        err = fails("--snrs", "10 five", "data/test", "babble", dump)
        assert "--snrs: 'five' is neither a number of dB nor 'clean'. Fix: give numbers such as 10 or -5" in err
        (tmp_path / "empty.scp").write_text("")
        err = fails("data/test", str(tmp_path / "empty.scp"), dump)
        assert f"{tmp_path / 'empty.scp'}: lists no recording" in err
        (tmp_path / "gone.scp").write_text(f"n1 {tmp_path / 'gone.wav'}\n")
        err = fails("data/test", str(tmp_path / "gone.scp"), dump)
        assert f"{tmp_path / 'gone.scp'} line 1: noise 'n1': audio file '{tmp_path / 'gone.wav'}' does not exist" in err
        err = fails("--babble_talkers", "8", "data/test", "babble", dump)
        assert "babble of 8 other talkers needs at least 9" in err
        assert not (tmp_path / "dump").exists() or not any((tmp_path / "dump").rglob("*.wav"))
    finally:
        os.chdir(REPO)


def test_make_snr_sets_wrapper_prints_usage():
    done = subprocess.run(["bash", str(REPO / "utils" / "make_snr_sets.sh"), "--help"], env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage: utils/make_snr_sets.sh" in done.stdout
    assert "babble" in done.stdout and "--snr_over" in done.stdout
