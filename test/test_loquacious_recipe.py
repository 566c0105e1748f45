"""egs2/loquacious/speechllm1: local/data.sh on fixture parquet shards in the Loquacious Set's schema, its errors,
and its configs.

The shards are written here with pyarrow in the schema of speechbrain/LoquaciousSet (ID, duration, wav as Hugging
Face's audio struct of encoded bytes, spk_id, sex, text) and its layout (<part>/<part>-0000N-of-0000M.parquet), with
0.1-s WAV files and ids in the form of each source corpus. data.sh runs for real in a scratch recipe dir that links
the recipe's local/, utils/ and path.sh, so nothing is written into the repository.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile
import yaml

from conftest import require_shellcheck

from speechllm.data.loquacious import SOURCES, source_of
from speechllm.data.parquet_corpus import RowError

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "loquacious" / "speechllm1"

# part -> shards -> rows (ID, spk_id, text): one id of each source corpus in dev, as the corpus writes them.
CORPUS = {
    "dev": [
        [("20180313-0900-PLENARY-15-en_20180313-19:28:27_0", "124883", "MADAM PRESIDENT I WELCOME THIS REPORT"),
         ("common_voice_en_19664034", "a1b2c3", "THE BOY WAS THERE WHEN THE SUN ROSE"),
         ("116-288045-0000", "116", "AS I APPROACHED THE CITY I HEARD BELLS RINGING")],
        [("Zx3kQ_9Lm-Y_00012.wav", None, "SO THAT IS WHAT WE DID"),
         ("common_voice_en_557", "d4e5f6", "   ")],  # an empty transcript: dropped and counted
    ],
    "test": [[("1688-142285-0000", "1688", "THERE'S IRON THEY SAY IN ALL OUR BLOOD"),
              ("20190115-0900-PLENARY-8-en_20190115-17:02:11_3", "28219", "THANK YOU MR PRESIDENT")]],
    "small": [[("common_voice_en_1", "s1", "HELLO WORLD"), ("common_voice_en_2", "s1", "GOOD MORNING")]],
}
LENGTH = 1600  # samples: 0.1 s at 16 kHz


def wav_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    samples = 0.1 * np.random.default_rng(seed).standard_normal(LENGTH)
    soundfile.write(buffer, samples, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_shard(path: Path, rows, schema: str = "loquacious") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = [{"bytes": wav_bytes(n), "path": f"{r[0]}.wav"} for n, r in enumerate(rows)]
    if schema == "loquacious":
        table = pa.table({"ID": [r[0] for r in rows], "duration": [LENGTH / 16000] * len(rows), "wav": audio,
                          "spk_id": [r[1] for r in rows], "sex": ["female"] * len(rows), "text": [r[2] for r in rows]})
    else:  # another corpus's schema (the ESB sets')
        table = pa.table({"audio": audio, "text": [r[2] for r in rows], "id": [r[0] for r in rows]})
    pq.write_table(table, path)


def write_corpus(root: Path, corpus: dict = CORPUS) -> Path:
    for part, shards in corpus.items():
        split = "train" if part == "small" else part
        for number, rows in enumerate(shards):
            write_shard(root / part / f"{split}-{number:05d}-of-{len(shards):05d}.parquet", rows)
    return root


@pytest.fixture
def recipe(tmp_path) -> Path:
    work = tmp_path / "recipe"
    work.mkdir()
    for name in ("local", "utils", "path.sh"):
        (work / name).symlink_to(os.path.realpath(RECIPE / name))
    corpus = write_corpus(tmp_path / "LoquaciousSet")
    (work / "db.sh").write_text(f"LOQUACIOUS={corpus}\n")
    return work


# as a recipe runs utils/: the project's Python first on PATH (path.sh)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def data_sh(recipe: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["local/data.sh", "--dev_short_size", "2", *options], cwd=recipe, capture_output=True,
                          text=True, timeout=120, env=ENV)


def read(path: Path) -> dict[str, str]:
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())


VOX = "124883-20180313-0900-PLENARY-15-en_20180313-19:28:27_0"


def test_data_dirs_per_source_and_in_total(recipe):
    run = data_sh(recipe)
    assert run.returncode == 0, run.stderr
    dev = recipe / "data" / "dev"
    assert read(dev / "text") == {
        VOX: "madam president i welcome this report",
        "a1b2c3-common_voice_en_19664034": "the boy was there when the sun rose",
        "116-288045-0000": "as i approached the city i heard bells ringing",  # already starts with its speaker
        "Zx3kQ_9Lm-Y_00012.wav": "so that is what we did",  # no spk_id: its own speaker
    }
    assert read(dev / "utt2category") == {VOX: "voxpopuli", "a1b2c3-common_voice_en_19664034": "commonvoice",
                                          "116-288045-0000": "librispeech", "Zx3kQ_9Lm-Y_00012.wav": "yodas"}
    assert read(dev / "utt2spk")["Zx3kQ_9Lm-Y_00012.wav"] == "Zx3kQ_9Lm-Y_00012.wav"
    assert set(read(dev / "utt2num_samples").values()) == {str(LENGTH)}
    for utt, path in read(dev / "wav.scp").items():
        info = soundfile.info(path)
        assert (info.format, info.samplerate, info.frames) == ("FLAC", 16000, LENGTH) and utt in path
    # one data dir per source, each holding its utterances only; a source absent from test gets no dir, said so
    for source, utt in (("voxpopuli", VOX), ("librispeech", "116-288045-0000"), ("yodas", "Zx3kQ_9Lm-Y_00012.wav")):
        assert list(read(recipe / "data" / f"dev_{source}" / "text")) == [utt]
    assert list(read(recipe / "data" / "test_librispeech" / "text")) == ["1688-142285-0000"]
    assert not (recipe / "data" / "test_yodas").exists() and "data/test_yodas not made: no yodas" in run.stdout
    # the empty transcript is counted, not silently lost
    assert "kept 4 of 5 utterances" in run.stdout and "removed: 1 with an empty transcript" in run.stdout
    assert read(recipe / "data" / "train_small" / "text") == {"s1-common_voice_en_1": "hello world",
                                                              "s1-common_voice_en_2": "good morning"}
    assert not (recipe / "data" / "train_small" / "utt2category").exists()  # sources are for dev/test only
    assert len(read(recipe / "data" / "dev_short" / "text")) == 2 and \
        set(read(recipe / "data" / "dev_short" / "text")) <= set(read(dev / "text"))
    for name in ("dev", "test", "train_small", "dev_short", "dev_voxpopuli"):
        check = subprocess.run([str(recipe / "utils" / "validate_data_dir.sh"), f"data/{name}"], cwd=recipe,
                               capture_output=True, text=True, timeout=30, env=ENV)
        assert check.returncode == 0, check.stderr


def test_rerun_reuses_converted_shards(recipe):
    assert data_sh(recipe).returncode == 0
    flac = Path(read(recipe / "data" / "dev" / "wav.scp")[VOX])
    before = flac.stat().st_mtime_ns
    again = data_sh(recipe)
    assert again.returncode == 0, again.stderr
    assert flac.stat().st_mtime_ns == before
    # another option (no lower-casing) is another conversion: the data dir follows it
    upper = data_sh(recipe, "--lowercase", "false")
    assert upper.returncode == 0 and read(recipe / "data" / "dev" / "text")[VOX] == \
        "MADAM PRESIDENT I WELCOME THIS REPORT"


def test_shard_of_another_schema_names_file_column_and_schema(recipe):
    corpus = recipe.parent / "LoquaciousSet"
    bad = corpus / "test" / "test-00000-of-00001.parquet"
    write_shard(bad, CORPUS["test"][0], schema="esb")
    run = data_sh(recipe)
    assert run.returncode != 0
    assert f"{bad}: has no column(s) 'ID', 'duration', 'wav', 'spk_id', 'sex'" in run.stderr
    assert "expected: ID (string), duration (seconds), wav (encoded 16 kHz audio)" in run.stderr
    assert not (recipe / "data" / "test").exists()


def test_missing_test_split_stops_before_anything_is_written(recipe):
    corpus = recipe.parent / "LoquaciousSet"
    (corpus / "test" / "test-00000-of-00001.parquet").unlink()
    run = data_sh(recipe)
    assert run.returncode != 0
    assert f"{corpus}/test holds no parquet shards: the 'test' part is missing" in run.stderr
    assert "huggingface-cli download speechbrain/LoquaciousSet --repo-type dataset --include 'test/*'" in run.stderr
    assert not (recipe / "data").exists()


def test_id_of_no_source_is_listed_and_nothing_written(recipe):
    corpus = recipe.parent / "LoquaciousSet"
    shard = corpus / "dev" / "dev-00001-of-00002.parquet"
    write_shard(shard, [("unknown_corpus_42", "x", "SOME WORDS")])
    run = data_sh(recipe)
    assert run.returncode != 0
    assert f"{shard}: row 1: ID 'unknown_corpus_42' matches no source" in run.stderr
    assert "--per_source false" in run.stderr
    assert not (recipe / "data" / "dev").exists() and not list((recipe / "data" / "audio").rglob("*.flac"))


def test_unset_corpus_location_points_to_db_sh(recipe):
    (recipe / "db.sh").write_text("LOQUACIOUS=\n")
    run = data_sh(recipe)
    assert run.returncode != 0 and "set LOQUACIOUS in db.sh" in run.stderr


def test_source_of_follows_rwth_filters():
    assert [source_of(i) for i in ("20180313-0900-PLENARY-15-en_20180313-19:28:27_0", "common_voice_en_1",
                                   "116-288045-0000", "abc.wav")] == ["voxpopuli", "commonvoice", "librispeech",
                                                                      "yodas"]
    assert list(SOURCES) == ["voxpopuli", "commonvoice", "librispeech", "yodas"]
    with pytest.raises(RowError, match="matches several sources"):
        source_of("common_voice_PLENARY")


def test_shell_scripts_pass_shellcheck():
    scripts = [RECIPE / "run.sh", RECIPE / "local" / "data.sh", REPO / "utils" / "prepare_esb.sh"]
    check = subprocess.run([require_shellcheck(), "-x", *map(str, scripts)], cwd=RECIPE, capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("config", ["train_hubert_qwen2_lora.yaml", "train_conformer_qwen2_lora.yaml"])
def test_speech_llm_configs_parse_with_the_task_options(config):
    from speechllm.tasks.speech_llm import SpeechLLMTask

    args = vars(SpeechLLMTask.get_parser().parse_args(["--config", str(RECIPE / "conf" / config),
                                                       "--output_dir", "x"]))
    assert args["llm_conf"]["name_or_path"] == "Qwen/Qwen2-0.5B" and args["llm_conf"]["finetune"] == "lora"


def test_hubert_config_is_the_librispeech_one():
    ours = yaml.safe_load((RECIPE / "conf" / "train_hubert_qwen2_lora.yaml").read_text())
    librispeech = yaml.safe_load((REPO / "egs2/librispeech/speechllm1/conf/train_hubert_qwen2_lora.yaml").read_text())
    assert ours == librispeech


def test_conformer_configs_build_their_encoder_and_decoder():
    """The encoder_conf/decoder_conf keys are ESPnet's (a misspelt one fails here, not hours into a GPU job)."""
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
    from espnet2.tasks.asr import ASRTask

    am = RECIPE / "conf" / "train_am_conformer.yaml"
    args = ASRTask.get_parser().parse_args(["--config", str(am), "--output_dir", "x", "--token_list", "x"])
    assert (args.encoder, args.decoder) == ("conformer", "transformer")
    small = {"num_blocks": 1}
    ConformerEncoder(80, **{**args.encoder_conf, **small})
    TransformerDecoder(50, 256, **{**args.decoder_conf, **small})
    speech_llm = yaml.safe_load((RECIPE / "conf" / "train_conformer_qwen2_lora.yaml").read_text())
    ConformerEncoder(80, **{**speech_llm["encoder_conf"], **small})


@pytest.mark.parametrize("config", ["decode.yaml", "decode_am.yaml"])
def test_decode_configs_hold_decoding_options(config):
    from speechllm.decoding.options import DecodingOptions

    DecodingOptions.from_dict(yaml.safe_load((RECIPE / "conf" / config).read_text()), where=config)


def test_hub_name_without_a_hub_says_how_to_get_a_local_copy(tmp_path, capsys):
    from speechllm.data import loquacious

    assert loquacious.main(["--corpus_dir", "speechbrain/LoquaciousSet", "--part", "dev",
                            "--data_dir", str(tmp_path / "dev")]) == 1  # conftest sets HF_HUB_OFFLINE=1
    err = capsys.readouterr().err
    assert "speechbrain/LoquaciousSet: is not a local folder and could not be fetched from the hub" in err
    assert "huggingface-cli download speechbrain/LoquaciousSet --repo-type dataset --local-dir DIR" in err
    assert not (tmp_path / "dev").exists()
