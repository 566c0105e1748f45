"""egs2/librispeech/speechllm1: local/data.sh on a miniature LibriSpeech tree, its errors, and its configs.

The tree has LibriSpeech's layout (``LibriSpeech/<subset>/SPK/CHAP/SPK-CHAP-UTT.flac`` and ``SPK-CHAP.trans.txt``)
with a few short flac files; data.sh runs for real in a scratch recipe dir that links the recipe's local/, utils/
and path.sh, so nothing is written into the repository.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from conftest import require_shellcheck

from speechllm.decoding.options import DecodingOptions
from speechllm.tasks.speech_llm import SpeechLLMTask

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "librispeech" / "speechllm1"

# subset -> speaker -> chapter -> upper-case transcripts, as LibriSpeech writes them.
CORPUS = {
    "dev-clean": {"84": {"121123": ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED"]},
                  "174": {"50561": ["FORGOTTEN TOO THE NAME OF GILLIAN THE LOVELY CAPTIVE"]}},
    "dev-other": {"116": {"288045": ["AS I APPROACHED THE CITY I HEARD BELLS RINGING"]}},
    "test-clean": {"1089": {"134686": ["HE HOPED THERE WOULD BE STEW FOR DINNER", "STUFF IT INTO YOU HIS BELLY"],
                            "134691": ["HE COULD WAIT NO LONGER"]}},
}


def write_corpus(root: Path, corpus: dict = CORPUS) -> Path:
    rng = np.random.default_rng(0)
    for subset, speakers in corpus.items():
        for speaker, chapters in speakers.items():
            for chapter, texts in chapters.items():
                folder = root / "LibriSpeech" / subset / speaker / chapter
                folder.mkdir(parents=True)
                lines = []
                for number, text in enumerate(texts):
                    utt = f"{speaker}-{chapter}-{number:04d}"
                    soundfile.write(folder / f"{utt}.flac", 0.1 * rng.standard_normal(3200), 16000)
                    lines.append(f"{utt} {text}\n")
                (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    return root


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A scratch recipe dir: the recipe's local/ and the shared utils/ and path.sh, its own db.sh."""
    work = tmp_path / "recipe"
    work.mkdir()
    for name in ("local", "utils", "path.sh"):
        (work / name).symlink_to(os.path.realpath(RECIPE / name))
    corpus = write_corpus(tmp_path / "corpora")
    (work / "db.sh").write_text(f"LIBRISPEECH={corpus}\n")
    return work


def data_sh(recipe: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["local/data.sh", *options], cwd=recipe, capture_output=True, text=True, timeout=60)


def read(path: Path) -> dict[str, str]:
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())


def test_data_dirs_follow_kaldi_librispeech(recipe):
    run = data_sh(recipe, "--subsets", "dev-clean,dev-other,test-clean")
    assert run.returncode == 0, run.stderr
    dev_clean = recipe / "data" / "dev_clean"
    assert read(dev_clean / "text") == {
        "174-50561-0000": "forgotten too the name of gillian the lovely captive",
        "84-121123-0000": "go do you hear",
        "84-121123-0001": "but in less than five minutes the staircase groaned",
    }
    corpus = recipe.parent / "corpora" / "LibriSpeech"
    assert read(dev_clean / "wav.scp") == {
        utt: str(corpus / "dev-clean" / utt.split("-")[0] / utt.split("-")[1] / f"{utt}.flac")
        for utt in read(dev_clean / "text")
    }
    # Kaldi's choice: the speaker is the reader and chapter, so one reader's two chapters are two speakers.
    test_clean = recipe / "data" / "test_clean"
    assert set(read(test_clean / "utt2spk").values()) == {"1089-134686", "1089-134691"}
    assert read(test_clean / "spk2utt") == {"1089-134686": "1089-134686-0000 1089-134686-0001",
                                            "1089-134691": "1089-134691-0000"}
    assert (test_clean / "text").read_text().splitlines() == sorted((test_clean / "text").read_text().splitlines())
    # dev = dev-clean + dev-other; train_960 needs subsets that were not asked for, and the log says so.
    assert set(read(recipe / "data" / "dev" / "text")) == set(read(dev_clean / "text")) | {"116-288045-0000"}
    assert not (recipe / "data" / "train_960").exists()
    assert "data/train_960 not made: needs train-clean-100 train-clean-360 train-other-500" in run.stdout
    for name in ("dev_clean", "dev_other", "test_clean", "dev"):
        check = subprocess.run([str(recipe / "utils" / "validate_data_dir.sh"), f"data/{name}"], cwd=recipe,
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr


def test_lowercase_false_keeps_the_transcripts(recipe):
    run = data_sh(recipe, "--subsets", "dev-other", "--lowercase", "false")
    assert run.returncode == 0, run.stderr
    assert read(recipe / "data" / "dev_other" / "text") == {
        "116-288045-0000": "AS I APPROACHED THE CITY I HEARD BELLS RINGING"}


def test_missing_subset_names_the_folder_and_the_download(recipe):
    run = data_sh(recipe, "--subsets", "dev-clean,train-other-500", "--download", "false")
    assert run.returncode != 0
    corpus = recipe.parent / "corpora"
    assert f"{corpus}/LibriSpeech/train-other-500 is missing" in run.stderr
    assert "https://www.openslr.org/resources/12/train-other-500.tar.gz" in run.stderr
    assert not (recipe / "data").exists()  # checked before anything is converted


def test_pointing_at_the_librispeech_folder_itself_is_explained(recipe):
    corpus = recipe.parent / "corpora"
    run = data_sh(recipe, "--subsets", "dev-clean", "--corpus_dir", str(corpus / "LibriSpeech"))
    assert run.returncode != 0
    assert f"give the folder that holds it: LIBRISPEECH={corpus} in db.sh" in run.stderr


def test_unset_corpus_location_points_to_db_sh(recipe):
    (recipe / "db.sh").write_text("LIBRISPEECH=\n")
    run = data_sh(recipe, "--subsets", "dev-clean", "--download", "false")
    assert run.returncode != 0 and "set LIBRISPEECH in db.sh" in run.stderr


def test_unknown_subset_is_refused(recipe):
    run = data_sh(recipe, "--subsets", "dev_clean")
    assert run.returncode != 0 and "unknown subset 'dev_clean'" in run.stderr


def test_damaged_extraction_is_listed_not_dropped(recipe):
    chapter = recipe.parent / "corpora" / "LibriSpeech" / "dev-clean" / "84" / "121123"
    (chapter / "84-121123-0001.flac").unlink()
    (chapter / "84-121123-0007.flac").write_bytes((chapter / "84-121123-0000.flac").read_bytes())
    run = data_sh(recipe, "--subsets", "dev-clean")
    assert run.returncode != 0
    assert f"{chapter}/84-121123-0001.flac: missing, but transcribed in 84-121123.trans.txt" in run.stderr
    assert f"{chapter}/84-121123-0007.flac: has no line in 84-121123.trans.txt" in run.stderr
    assert not (recipe / "data" / "dev_clean").exists()


def test_shell_scripts_pass_shellcheck():
    scripts = [RECIPE / "run.sh", RECIPE / "local" / "data.sh"]
    check = subprocess.run([require_shellcheck(), "-x", *map(str, scripts)], cwd=RECIPE, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout


def parse_config(name: str) -> dict:
    """The full task options of a recipe config: an unknown or misspelt key stops the parser."""
    return vars(SpeechLLMTask.get_parser().parse_args(["--config", str(RECIPE / "conf" / name), "--output_dir", "x"]))


@pytest.mark.parametrize("config", sorted(p.name for p in (RECIPE / "conf").glob("train*.yaml")))
def test_train_configs_parse_with_the_task_options(config):
    args = parse_config(config)
    assert args["frontend"] == "s3prl" and args["frontend_conf"]["multilayer_feature"] is True
    assert "frontend.upstream" in args["freeze_param"]


def test_frozen_variant_differs_from_lora_only_in_the_llm_finetuning():
    lora, frozen = parse_config("train_hubert_qwen2_lora.yaml"), parse_config("train_hubert_qwen2_frozen.yaml")
    assert (lora["llm_conf"]["finetune"], frozen["llm_conf"]["finetune"]) == ("lora", "frozen")
    assert {k: v for k, v in lora.items() if k not in ("llm_conf", "config")} == \
        {k: v for k, v in frozen.items() if k not in ("llm_conf", "config")}
    assert {k: v for k, v in lora["llm_conf"].items() if k not in ("finetune", "lora_conf")} == \
        {k: v for k, v in frozen["llm_conf"].items() if k not in ("finetune", "lora_conf")}


def test_decode_config_holds_decoding_options():
    conf = yaml.safe_load((RECIPE / "conf" / "decode.yaml").read_text())
    DecodingOptions.from_dict(conf, where="conf/decode.yaml")  # unknown keys or bad values raise


# ---------------------------------------------------------------------------------- downloading SLR12 archives


def tar_gz(path: Path, root: Path, members) -> Path:
    import tarfile

    with tarfile.open(path, "w:gz") as archive:
        for name in members:
            archive.add(root / name, arcname=name)
    return path


def test_data_sh_downloads_checks_and_extracts_missing_subsets(tmp_path, archive_server):
    """No corpus given: data.sh fetches dev-clean's archive (served in SLR12's layout), checks its MD5, extracts it
    into the download folder and converts it; a second run uses what is there."""
    import hashlib

    source = write_corpus(tmp_path / "source", {"dev-clean": CORPUS["dev-clean"]})
    archive = tar_gz(tmp_path / "dev-clean.tar.gz", source, ["LibriSpeech"])
    url = archive_server({"/12/dev-clean.tar.gz": archive.read_bytes()})
    work = tmp_path / "recipe"
    work.mkdir()
    for name in ("local", "utils", "path.sh"):
        (work / name).symlink_to(os.path.realpath(RECIPE / name))
    (work / "db.sh").write_text("LIBRISPEECH=\n")
    (work / "md5sum.txt").write_text(f"{hashlib.md5(archive.read_bytes()).hexdigest()} dev-clean.tar.gz\n")
    options = ("--subsets", "dev-clean", "--data_url", f"{url}/12", "--md5sum_file", "md5sum.txt")
    run = data_sh(work, *options)
    assert run.returncode == 0, run.stderr
    assert (work / "downloads/dev-clean.tar.gz").is_file()
    assert (work / "downloads/LibriSpeech/dev-clean/84/121123/84-121123-0000.flac").is_file()
    assert len(read(work / "data/dev_clean/text")) == 3
    again = data_sh(work, *options)
    assert again.returncode == 0 and "downloading" not in again.stdout + again.stderr
    # The published MD5 (no --md5sum_file) does not match this fixture: a fresh download is refused, not extracted.
    (work / "md5sum.txt").unlink()
    run = data_sh(work, "--subsets", "dev-clean", "--data_url", f"{url}/12", "--download_dir", "other")
    assert run.returncode != 0
    assert "not the published 42e2234ba48799c1f50f24a7926300a1" in run.stderr
    assert not (work / "other/LibriSpeech").exists() and (work / "other/dev-clean.tar.gz.bad").is_file()
