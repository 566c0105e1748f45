"""The synth_an4 demo corpus: egs2/synth_an4/speechllm1/local/ (data.sh, synthesize.py) and speechllm/synth/."""
import filecmp
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import require_shellcheck

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "egs2" / "synth_an4" / "speechllm1" / "local"
SPLITS = ("train", "dev", "test")
TINY = ["--num_train", "40", "--num_dev", "8", "--num_test", "8"]

from speechllm.data.validate import validate_data_dir  # noqa: E402
from speechllm.synth import an4_grammar  # noqa: E402
from speechllm.synth import espeak as espeak_tts  # noqa: E402

sys.path.insert(0, str(LOCAL))
import synthesize as synth_an4  # noqa: E402


def have_espeak() -> bool:
    return importlib.util.find_spec("espeakng_loader") is not None


needs_espeak = pytest.mark.skipif(not have_espeak(), reason="espeakng-loader is not installed "
                                  "(pip install espeakng-loader, or tools/install.sh)")


def synthesize(workdir: Path, *options, env=None, check=True):
    """Runs local/synthesize.py in workdir the way data.sh does (audio and data paths relative to workdir)."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(LOCAL / "synthesize.py"), "--audio_dir", "downloads/synth_an4", "--data_dir",
           "data", "--nj", "2", *options]
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def read_table(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def corpus_files(workdir: Path):
    """Every file the generator writes, relative to workdir."""
    return sorted(p.relative_to(workdir) for p in workdir.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not have_espeak():
        pytest.skip("espeakng-loader is not installed (pip install espeakng-loader, or tools/install.sh)")
    workdir = tmp_path_factory.mktemp("synth_an4") / "seed0"
    result = synthesize(workdir, *TINY)
    return workdir, result.stdout


# ------------------------------------------------------------------ grammar (no eSpeak needed)

@pytest.mark.parametrize("number,words", [(0, "zero"), (13, "thirteen"), (40, "forty"), (45, "forty five"),
                                          (400, "four hundred"), (405, "four hundred five"),
                                          (1000, "one thousand"), (9999, "nine thousand nine hundred ninety nine")])
def test_number_words(number, words):
    assert an4_grammar.number_words(number) == words


@pytest.mark.parametrize("day,words", [(1, "first"), (5, "fifth"), (12, "twelfth"), (20, "twentieth"),
                                       (21, "twenty first"), (30, "thirtieth"), (31, "thirty first")])
def test_ordinal_words(day, words):
    assert an4_grammar.ordinal_words(day) == words


@pytest.mark.parametrize("year,words", [(1990, "nineteen ninety"), (1905, "nineteen oh five"),
                                        (1900, "nineteen hundred"), (2000, "two thousand"),
                                        (2004, "two thousand four"), (2015, "twenty fifteen")])
def test_year_words(year, words):
    assert an4_grammar.year_words(year) == words


def test_out_of_range_numbers_are_refused():
    with pytest.raises(ValueError, match="0..9999"):
        an4_grammar.number_words(10000)
    with pytest.raises(ValueError, match="1..31"):
        an4_grammar.ordinal_words(32)


def test_sentences_are_normalised_and_from_the_vocabulary():
    import random
    rng = random.Random(3)
    sentences = [an4_grammar.random_sentence(rng) for _ in range(2000)]
    vocabulary = an4_grammar.vocabulary()
    for sentence in sentences:
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", sentence), sentence
        assert set(sentence.split()) <= vocabulary, sentence
    assert len(set(sentences)) > 1500  # many distinct sentences, few repeats (the one-word commands)


def test_held_out_sentences_that_cannot_be_drawn_stop_with_advice():
    import random
    with pytest.raises(RuntimeError, match=r"could draw only 0 of 3 test sentences.*raise --num_train"):
        synth_an4.draw_held_out(random.Random(0), 3, "test", forbidden={"yes"}, train_words={"yes"})


def test_plan_depends_only_on_seed_and_counts():
    counts = {"train": 30, "dev": 5, "test": 5}
    plan = synth_an4.make_plan(0, counts)
    assert plan == synth_an4.make_plan(0, counts)
    assert plan != synth_an4.make_plan(1, counts)
    assert [sum(u.split == split for u in plan) for split in SPLITS] == [30, 5, 5]
    assert len({u.id for u in plan}) == len(plan)


def test_letter_a_is_spoken_as_a_letter():
    assert espeak_tts.spoken_form("erase a b a") == "erase a- b a-"
    assert espeak_tts.spoken_form("march fifth") == "march fifth"


# ------------------------------------------------------------------ the generated corpus

@needs_espeak
def test_data_dirs_are_sorted_and_consistent(corpus):
    workdir, _ = corpus
    for split in SPLITS:  # the toolkit's own checker: sorted as LC_ALL=C sort, consistent, speaker-prefixed ids
        assert validate_data_dir(workdir / "data" / split) == []
    sizes = {split: len(read_table(workdir / "data" / split / "text")) for split in SPLITS}
    assert sizes == {"train": 40, "dev": 8, "test": 8}


@needs_espeak
def test_speakers_and_voice_variants_are_disjoint_across_splits(corpus):
    workdir, _ = corpus
    speakers = {split: set(read_table(workdir / "data" / split / "utt2spk").values()) for split in SPLITS}
    assert all(len(speakers[split]) >= 2 for split in SPLITS)
    rows = [line.split("\t") for line in (workdir / "downloads/synth_an4/plan.tsv").read_text().splitlines()[2:]]
    variants = {split: {row[3].split("+")[1] for row in rows if row[1] == split} for split in SPLITS}
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not speakers[a] & speakers[b], f"{a} and {b} share speakers"
        assert not variants[a] & variants[b], f"{a} and {b} share voice variants"


@needs_espeak
def test_sentences_are_disjoint_and_test_words_are_covered_by_train(corpus):
    workdir, stdout = corpus
    texts = {split: set(read_table(workdir / "data" / split / "text").values()) for split in SPLITS}
    assert not texts["train"] & texts["test"]
    assert not texts["train"] & texts["dev"]
    assert not texts["dev"] & texts["test"]
    train_words = {word for text in texts["train"] for word in text.split()}
    test_words = {word for text in texts["test"] for word in text.split()}
    assert test_words <= train_words
    assert f"test words seen in train: {len(test_words)}/{len(test_words)} word types" in stdout
    for text in set().union(*texts.values()):
        assert re.fullmatch(r"[a-z]+( [a-z]+)*", text), text


@needs_espeak
def test_summary_reports_counts_hours_vocabulary_and_time(corpus):
    _, stdout = corpus
    assert re.search(r"^train\s+40\s+\d+\s+\d+\.\d{3}\s+\d+\s+\d+$", stdout, re.M), stdout
    assert re.search(r"^test\s+8\s+", stdout, re.M)
    assert "audio: 56 files synthesised, 0 reused" in stdout
    assert re.search(r"^\d+\.\d s with --nj 2$", stdout, re.M)


@needs_espeak
def test_audio_is_16k_mono_speech_of_plausible_length(corpus):
    import soundfile
    workdir, _ = corpus
    for split in SPLITS:
        texts = read_table(workdir / "data" / split / "text")
        for utt, path in read_table(workdir / "data" / split / "wav.scp").items():
            info = soundfile.info(workdir / path)
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            audio, fs = soundfile.read(workdir / path)
            words = len(texts[utt].split())
            assert 0.1 + 0.08 * words < len(audio) / fs < 1.0 + 1.0 * words, (utt, len(audio) / fs, texts[utt])
            frames = audio[: len(audio) // 400 * 400].reshape(-1, 400)  # 25 ms
            rms = np.sqrt(np.mean(frames ** 2, axis=1))
            assert rms.max() > 0.03, f"{path}: no speech energy"
            assert 20 * np.log10(rms.max() / rms.min()) > 25, f"{path}: no pause/speech contrast"
            assert rms[0] < rms.max() / 10, f"{path}: does not start with silence"
            assert np.abs(audio).max() < 0.99, f"{path}: clipped"


@needs_espeak
def test_same_seed_gives_identical_files_and_another_seed_differs(corpus, tmp_path):
    workdir, _ = corpus
    again = tmp_path / "seed0_again"
    synthesize(again, *TINY, "--nj", "1")  # another process layout must not matter
    assert corpus_files(again) == corpus_files(workdir)
    for relative in corpus_files(workdir):
        assert filecmp.cmp(workdir / relative, again / relative, shallow=False), f"{relative} differs"

    other = tmp_path / "seed1"
    synthesize(other, *TINY, "--seed", "1")
    assert read_table(other / "data/test/text") != read_table(workdir / "data/test/text")
    first_wav = sorted((other / "downloads/synth_an4/wav/train").iterdir())[0]
    assert first_wav.read_bytes() != sorted((workdir / "downloads/synth_an4/wav/train").iterdir())[0].read_bytes()


@needs_espeak
def test_rerun_reuses_audio_and_remakes_only_what_is_missing(corpus, tmp_path):
    workdir, _ = corpus
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    wavs = sorted((copy / "downloads/synth_an4/wav/dev").iterdir())
    mtimes = {wav: wav.stat().st_mtime_ns for wav in wavs}
    removed = wavs[0]
    removed.unlink()
    result = synthesize(copy, *TINY)
    assert "audio: 1 files synthesised, 55 reused" in result.stdout
    assert removed.read_bytes() == (workdir / removed.relative_to(copy)).read_bytes()
    assert all(wav.stat().st_mtime_ns == mtime for wav, mtime in mtimes.items() if wav != removed)


@needs_espeak
def test_other_options_into_the_same_audio_dir_are_refused(corpus, tmp_path):
    workdir, _ = corpus
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    result = synthesize(copy, *TINY, "--fs", "8000", check=False)
    assert result.returncode != 0
    assert "downloads/synth_an4/plan.tsv records a different corpus" in result.stderr
    assert "pass another --audio_dir" in result.stderr


def test_missing_espeakng_loader_says_how_to_install(tmp_path):
    shadow = tmp_path / "shadow" / "espeakng_loader"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named espeakng_loader (simulated)')\n")
    env = dict(os.environ, PYTHONPATH=str(shadow.parent))
    result = synthesize(tmp_path / "work", *TINY, env=env, check=False)
    assert result.returncode != 0
    assert "pip install espeakng-loader" in result.stderr and "tools/install.sh" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_options_name_the_option(tmp_path):
    result = synthesize(tmp_path, "--num_test", "0", check=False)
    assert result.returncode == 2 and "--num_test must be at least 1" in result.stderr


# ------------------------------------------------------------------ data.sh

@needs_espeak
def test_data_sh_runs_from_a_recipe_dir(tmp_path):
    for tool in ("parse_options.sh", "validate_data_dir.sh"):
        if not (REPO / "utils" / tool).is_file():
            pytest.skip(f"utils/{tool} is not written yet")
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "local").symlink_to(LOCAL)
    (recipe / "utils").symlink_to(REPO / "utils")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["local/data.sh", "--num_train", "12", "--num_dev", "3", "--num_test=4", "--audio_dir", "dl"]
    result = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {split: len(read_table(recipe / "data" / split / "text")) for split in SPLITS} == \
        {"train": 12, "dev": 3, "test": 4}
    assert (recipe / "dl" / "plan.tsv").is_file()
    assert "Successfully validated data-directory data/test" in result.stdout
    assert "Successfully finished" in result.stdout

    result = subprocess.run(["local/data.sh", "--num_tarin", "3"], cwd=recipe, capture_output=True, text=True)
    assert result.returncode != 0 and "unknown option --num_tarin" in result.stderr


def test_data_sh_passes_shellcheck():
    result = subprocess.run([require_shellcheck(), str(LOCAL / "data.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
