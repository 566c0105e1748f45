"""The Kaldi data-dir contract and its tools (speechllm.data, utils/*.sh), on small generated dirs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_shellcheck

from speechllm.data import datadir
from speechllm.data.combine import combine_data
from speechllm.data.datadir import DataDirError, read_kv, write_kv
from speechllm.data.fix import fix_data_dir
from speechllm.data.length_filter import Limits, filter_data_dir
from speechllm.data.speed_perturb import perturb_speed
from speechllm.data.split import split_data
from speechllm.data.subset import subset_data_dir
from speechllm.data.validate import validate_data_dir

REPO = Path(__file__).resolve().parents[1]
WRAPPERS = ["validate_data_dir.sh", "fix_data_dir.sh", "split_data.sh", "utt2spk_to_spk2utt.sh",
            "spk2utt_to_utt2spk.sh", "combine_data.sh", "subset_data_dir.sh", "perturb_data_dir_speed.sh",
            "dump_audio.sh", "filter_data_dir.sh"]


def write_dir(path: Path, **files: str) -> Path:
    """Write raw file contents (keyword 'wav_scp' is wav.scp), so tests can write bad input too."""
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (path / name.replace("_scp", ".scp")).write_text(content, encoding="utf-8")
    return path


def good_dir(path: Path, speakers: dict[str, int] | None = None) -> Path:
    """A valid dir: utterances '<spk>-u<i>', transcripts of i+1 words, wav paths that need not exist."""
    speakers = speakers or {"spkA": 2, "spkB": 3, "spkC": 1}
    utt2spk = {f"{spk}-u{i}": spk for spk, count in speakers.items() for i in range(count)}
    path.mkdir(parents=True, exist_ok=True)
    write_kv(path / "utt2spk", utt2spk)
    write_kv(path / "spk2utt", datadir.spk2utt_from_utt2spk(utt2spk))
    write_kv(path / "wav.scp", {u: f"/audio/{u}.wav" for u in utt2spk})
    write_kv(path / "text", {u: " ".join(["word"] * (int(u[-1]) + 1)) for u in utt2spk})
    write_kv(path / "utt2dur", {u: str(1.0 + int(u[-1])) for u in utt2spk})
    return path


def run_tool(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run a utils/ wrapper the way a recipe does, with the project's Python first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([str(REPO / "utils" / name), *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=env, check=False)


def errors_of(path: Path, **options) -> list[str]:
    return [str(p) for p in validate_data_dir(path, **options) if p.severity == "error"]


def files_of(path: Path) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted(path.iterdir()) if f.is_file()}


# --------------------------------------------------------------------------------------------------------------
# read/write helpers

def test_write_kv_sorts_in_c_byte_order_and_read_kv_keeps_file_order(tmp_path):
    write_kv(tmp_path / "text", {"b": "x", "B": "y", "a_1": "", "a-1": "z", "é": "w"})
    assert (tmp_path / "text").read_text().splitlines() == ["B y", "a-1 z", "a_1", "b x", "é w"]
    assert list(read_kv(tmp_path / "text").items()) == [("B", "y"), ("a-1", "z"), ("a_1", ""), ("b", "x"),
                                                          ("é", "w")]
    write_kv(tmp_path / "text2", {"b": "1", "a": "2"}, sort=False)
    assert list(read_kv(tmp_path / "text2")) == ["b", "a"]


def test_read_kv_errors_name_file_line_and_fix(tmp_path):
    write_dir(tmp_path, utt2spk="u1 s1\nu2 s2\nu1 s3\n")
    with pytest.raises(DataDirError) as error:
        read_kv(tmp_path / "utt2spk")
    assert f"{tmp_path / 'utt2spk'} line 3: id 'u1' repeats line 1" in str(error.value)
    assert "sort -k1,1 -u" in str(error.value)
    write_dir(tmp_path, utt2num_samples="u1 16000\nu2 many\n")
    with pytest.raises(DataDirError, match=r"utt2num_samples line 2: .*'many' is not a positive integer"):
        read_kv(tmp_path / "utt2num_samples")
    write_dir(tmp_path, segments="u1 r1 2.0 1.0\n")
    with pytest.raises(DataDirError, match=r"segments line 1: .*end time 1.0 is not after start time 2.0"):
        read_kv(tmp_path / "segments")


def test_write_kv_refuses_ids_with_whitespace(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        write_kv(tmp_path / "text", {"a b": "x"})


# --------------------------------------------------------------------------------------------------------------
# validate

def test_valid_dir_passes_and_wrapper_says_so(tmp_path):
    data = good_dir(tmp_path / "x")
    assert errors_of(data) == []
    result = run_tool("validate_data_dir.sh", data)
    assert result.returncode == 0, result.stderr
    assert "Successfully validated" in result.stdout


def test_validate_reports_every_problem_with_file_line_and_fix(tmp_path):
    data = good_dir(tmp_path / "x")
    # text: unsorted (spkB before spkA), an id missing from wav.scp, an empty transcript, a CRLF line.
    write_dir(data, text="spkB-u0 w\nspkA-u0 w\nspkA-u1 w w\nspkB-u1\nspkB-u2 w\r\nspkC-u0 w\nspkZ-u9 w\n",
              wav_scp="spkA-u0 a.wav\nspkA-u1 b.wav\nspkA-u1 b2.wav\nspkB-u0 c.wav\nspkB-u1 d.wav\nspkB-u2 e.wav\n")
    result = run_tool("validate_data_dir.sh", data)
    assert result.returncode == 1
    out = result.stderr
    text, wav, utt2spk = data / "text", data / "wav.scp", data / "utt2spk"
    assert f"{text} line 2: id 'spkA-u0' comes after 'spkB-u0' (line 1): not sorted in C byte order" in out
    assert "LC_ALL=C sort -k1,1 -u" in out
    assert f"{text} line 4: utterance 'spkB-u1' has an empty transcript" in out and "--allow-empty-text" in out
    assert f"{text} line 5: ends with a carriage return" in out
    assert f"{text} line 7: utterance 'spkZ-u9' is not in utt2spk" in out
    assert f"{wav} line 3: id 'spkA-u1' repeats line 2" in out
    assert f"{utt2spk} line 6: utterance 'spkC-u0' has no line in wav.scp" in out
    assert f"utils/fix_data_dir.sh {data}" in out
    assert "error(s)" in out


def test_validate_options(tmp_path):
    data = good_dir(tmp_path / "x")
    write_dir(data, text="spkA-u0 w\nspkA-u1\nspkB-u0 w\nspkB-u1 w\nspkB-u2 w\nspkC-u0 w\n")
    assert len(errors_of(data)) == 1
    assert errors_of(data, allow_empty_text=True) == []
    (data / "text").unlink()
    assert any("text: is missing" in e and "--no-text" in e for e in errors_of(data))
    assert errors_of(data, no_text=True) == []


def test_validate_speaker_checks(tmp_path):
    # Ids not prefixed by their speaker: sorting by speaker differs from sorting by utterance.
    data = write_dir(tmp_path / "x", utt2spk="a1 zed\nb1 amy\n", spk2utt="amy b1\nzed a1\n",
                     wav_scp="a1 a.wav\nb1 b.wav\n", text="a1 hi\nb1 ho\n")
    problems = validate_data_dir(data)
    errors = [str(p) for p in problems if p.severity == "error"]
    warnings = [str(p) for p in problems if p.severity == "warning"]
    assert len(errors) == 1 and "not sorted by speaker" in errors[0] and "--no-spk-sort" in errors[0]
    assert f"{data / 'utt2spk'} line 1: utterance id 'a1' does not start with its speaker id 'zed'" in warnings[0]
    assert errors_of(data, no_spk_sort=True) == []
    write_dir(data, spk2utt="amy b1\nzed a1 b1\n")
    assert any(f"{data / 'spk2utt'} line 2: speaker 'zed' lists 'a1 b1' but utt2spk gives 'a1'" in e
               and "utt2spk_to_spk2utt.sh" in e for e in errors_of(data, no_spk_sort=True))


def test_validate_segments(tmp_path):
    data = write_dir(tmp_path / "x", utt2spk="s-1 s\ns-2 s\ns-3 s\n", spk2utt="s s-1 s-2 s-3\n",
                     text="s-1 a\ns-2 b\ns-3 c\n", wav_scp="rec1 r1.wav\nrec2 r2.wav\n",
                     segments="s-1 rec1 0.0 1.5\ns-2 rec1 1.5 1.5\ns-3 recX 0 1\n")
    errors = errors_of(data)
    assert any(f"{data / 'segments'} line 2: malformed line for 's-2': end time 1.5 is not after start time 1.5"
               in e for e in errors)
    assert any(f"{data / 'segments'} line 3: utterance 's-3' refers to recording 'recX', which is not in wav.scp"
               in e for e in errors)
    warnings = [str(p) for p in validate_data_dir(data) if p.severity == "warning"]
    assert any(f"{data / 'wav.scp'} line 2: recording 'rec2' has no segment" in w for w in warnings)


def test_validate_refuses_ids_that_break_sclite_naming_the_first(tmp_path):
    data = good_dir(tmp_path / "x")
    write_dir(data, utt2spk="spkA-u(0) spkA\nspkA-u1 spkA\nspkB-u0 spkB\nspkB-u\x0b1 spkB\nspkB-u2 spk)B\n",
              spk2utt="spk)B spkB-u2\nspkA spkA-u(0) spkA-u1\nspkB spkB-u0 spkB-u\x0b1\n",
              text="spkA-u(0) w\nspkA-u1 w\nspkB-u0 w\nspkB-u\x0b1 w\nspkB-u2 w\n",
              wav_scp="spkA-u(0) a\nspkA-u1 a\nspkB-u0 a\nspkB-u\x0b1 a\nspkB-u2 a\n")
    (data / "utt2dur").unlink()
    errors = errors_of(data, no_spk_sort=True)
    assert (f"{data / 'utt2spk'} line 1: utterance id 'spkA-u(0)' contains '(' at position 7: sclite's trn lines end "
            "with '(speaker-utterance)', so scoring would misread it (2 more id(s) like it in this file)") in \
        "\n".join(errors)
    assert any(e.startswith(f"{data / 'text'} line 1: utterance id 'spkA-u(0)'") for e in errors)
    assert any(e.startswith(f"{data / 'spk2utt'} line 1: speaker id 'spk)B'") for e in errors)
    result = run_tool("validate_data_dir.sh", "--no-spk-sort", data)
    assert result.returncode == 1 and "utterance id 'spkA-u(0)' contains '('" in result.stderr


def test_validate_caps_long_lists(tmp_path):
    data = good_dir(tmp_path / "x", {"s": 30})
    write_dir(data, text="".join(f"{u}\n" for u in read_kv(data / "utt2spk")))  # 30 empty transcripts
    result = run_tool("validate_data_dir.sh", data)
    shown = [line for line in result.stderr.splitlines() if "has an empty transcript" in line]
    assert len(shown) == 10
    assert "and 20 more problems like the above (empty transcript)" in result.stderr


# --------------------------------------------------------------------------------------------------------------
# fix

def test_fix_sorts_drops_with_reasons_backs_up_and_result_validates(tmp_path):
    data = good_dir(tmp_path / "x")
    original_text = "spkB-u0 w\nspkA-u0 w\nspkA-u1 w w\nspkA-u1 again\nspkB-u1\nspkB-u2 w\r\nspkC-u0 w\nspkZ-u9 w\n"
    write_dir(data, text=original_text, wav_scp="spkA-u0 a.wav\nspkA-u1 b.wav\nspkB-u0 c.wav\nspkB-u1 d.wav\n"
              "spkB-u2 e.wav\n")
    result = run_tool("fix_data_dir.sh", data)
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert "kept 4 of 7 utterances; removed 3: " in report
    for reason in ("1 not in wav.scp,", "1 not in wav.scp/utt2spk/utt2dur", "1 empty transcript"):
        assert reason in report
    assert "1 repeated id line(s) in text" in report
    assert "sorted (LC_ALL=C): text" in report and "Windows line endings from: text" in report
    assert (data / ".backup" / "text").read_bytes() == original_text.encode()
    removed = (data / ".backup" / "removed.txt").read_text().splitlines()
    assert "spkC-u0 not in wav.scp" in removed
    assert "spkZ-u9 not in wav.scp/utt2spk/utt2dur" in removed
    assert "spkB-u1 empty transcript" in removed
    assert "spkA-u1 text line 4: repeats line 3 (kept the first)" in removed
    assert "spkC spk2gender: speaker has no utterance left" not in removed  # there is no spk2gender
    assert errors_of(data) == []
    assert read_kv(data / "text") == {"spkA-u0": "w", "spkA-u1": "w w", "spkB-u0": "w", "spkB-u2": "w"}
    assert read_kv(data / "spk2utt") == {"spkA": "spkA-u0 spkA-u1", "spkB": "spkB-u0 spkB-u2"}


def test_fix_keeps_empty_text_when_allowed_and_drops_unused_recordings(tmp_path):
    data = write_dir(tmp_path / "x", utt2spk="s-1 s\ns-2 s\n", spk2utt="s s-1\n", text="s-1 a\ns-2\n",
                     wav_scp="rec1 r1.wav\nrec2 r2.wav\nrec3 r3.wav\n", segments="s-1 rec1 0 1\ns-2 rec2 0 1\n",
                     reco2dur="rec1 1\nrec2 1\nrec3 4\n")
    report = fix_data_dir(data, allow_empty_text=True)
    assert (report.kept, report.total) == (2, 2)
    assert list(read_kv(data / "wav.scp")) == ["rec1", "rec2"] and list(read_kv(data / "reco2dur")) == ["rec1",
                                                                                                          "rec2"]
    assert ("rec3", "wav.scp: recording has no utterance left") in report.removed
    assert read_kv(data / "spk2utt") == {"s": "s-1 s-2"}
    report = fix_data_dir(data)
    assert report.kept == 1 and ("s-2", "empty transcript") in report.removed
    assert list(read_kv(data / "wav.scp")) == ["rec1"]


def test_fix_gives_the_right_spk2utt_in_one_run_when_utt2spk_was_unsorted(tmp_path):
    data = write_dir(tmp_path / "x", utt2spk="a-2 a\nb-1 b\na-1 a\n", text="a-1 x\na-2 y\nb-1 z\n",
                     wav_scp="a-1 1.wav\na-2 2.wav\nb-1 3.wav\n")
    assert run_tool("fix_data_dir.sh", data).returncode == 0
    assert (data / "spk2utt").read_text() == "a a-1 a-2\nb b-1\n"
    assert errors_of(data) == []


def test_fix_is_idempotent_and_never_overwrites_a_backup(tmp_path):
    data = good_dir(tmp_path / "x")
    original_text = "spkB-u0 w\nspkA-u0 w\nspkA-u1 w w\nspkB-u1 w\nspkB-u2 w\nspkC-u0 w\n"
    write_dir(data, text=original_text)
    first = run_tool("fix_data_dir.sh", data)
    assert first.returncode == 0 and f"originals in {data / '.backup'}/" in first.stdout
    fixed = files_of(data)
    second = run_tool("fix_data_dir.sh", data)
    assert second.returncode == 0 and "nothing to fix" in second.stdout, second.stdout
    assert files_of(data) == fixed
    assert (data / ".backup" / "text").read_text() == original_text  # still the first run's originals
    assert not (data / ".backup.2").exists()
    # A later run that does change something keeps the first backup and makes its own.
    write_dir(data, text=fixed["text"].replace("spkC-u0 w\n", ""))
    third = run_tool("fix_data_dir.sh", data)
    assert third.returncode == 0 and f"originals in {data / '.backup.2'}/" in third.stdout
    assert (data / ".backup" / "text").read_text() == original_text
    assert "spkC-u0 not in text" in (data / ".backup.2" / "removed.txt").read_text()


def test_fix_refuses_to_empty_a_dir(tmp_path):
    data = write_dir(tmp_path / "x", utt2spk="a s\n", spk2utt="s a\n", wav_scp="b b.wav\n")
    with pytest.raises(DataDirError, match="none of its 2 utterances is in every file"):
        fix_data_dir(data)
    assert (data / "utt2spk").read_text() == "a s\n"


# --------------------------------------------------------------------------------------------------------------
# split, combine, converters

def test_split_per_speaker_round_trips_through_combine(tmp_path):
    data = good_dir(tmp_path / "x", {"spkA": 5, "spkB": 3, "spkC": 2, "spkD": 2, "spkE": 1})
    result = run_tool("split_data.sh", data, 3)
    assert result.returncode == 0, result.stderr
    parts = [data / "split3" / str(i) for i in (1, 2, 3)]
    speakers = []
    for part in parts:
        assert errors_of(part) == []
        speakers.append(set(read_kv(part / "utt2spk").values()))
    assert sum(len(s) for s in speakers) == 5 and set.union(*speakers) == {"spkA", "spkB", "spkC", "spkD", "spkE"}
    assert sorted(len(read_kv(p / "utt2spk")) for p in parts) == [4, 4, 5]  # 13 utterances, balanced
    result = run_tool("combine_data.sh", tmp_path / "combined", *parts)
    assert result.returncode == 0, result.stderr
    original = files_of(data)
    assert files_of(tmp_path / "combined") == original


def test_split_per_utt_and_too_many_parts(tmp_path):
    data = good_dir(tmp_path / "x", {"spkA": 5, "spkB": 2})
    parts = split_data(data, 3, per_utt=True)
    assert [p.relative_to(data).as_posix() for p in parts] == ["split3utt/1", "split3utt/2", "split3utt/3"]
    assert [len(read_kv(p / "utt2spk")) for p in parts] == [2, 2, 3]
    assert all(errors_of(p) == [] for p in parts)
    result = run_tool("split_data.sh", data, 3)
    assert result.returncode == 1
    assert f"{data}: has 2 speakers, too few for 3 parts" in result.stderr and "--per-utt" in result.stderr


def test_split_keeps_only_needed_recordings(tmp_path):
    data = write_dir(tmp_path / "x", utt2spk="a-1 a\nb-1 b\n", spk2utt="a a-1\nb b-1\n", text="a-1 x\nb-1 y\n",
                     wav_scp="r1 r1.wav\nr2 r2.wav\n", segments="a-1 r1 0 1\nb-1 r2 0 1\n")
    first, second = split_data(data, 2)
    assert read_kv(first / "wav.scp") == {"r1": "r1.wav"} and read_kv(second / "wav.scp") == {"r2": "r2.wav"}


def test_combine_duplicate_ids_name_both_sources(tmp_path):
    one = good_dir(tmp_path / "one", {"spkA": 2})
    two = good_dir(tmp_path / "two", {"spkA": 3})
    result = run_tool("combine_data.sh", tmp_path / "both", one, two)
    assert result.returncode == 1
    assert (f"{two / 'utt2spk'} line 1: utterance 'spkA-u0' is also in {one / 'utt2spk'} line 1"
            in result.stderr)
    assert "prefix" in result.stderr and not (tmp_path / "both").exists()


def test_combine_leaves_out_files_missing_from_a_source(tmp_path):
    one = good_dir(tmp_path / "one", {"spkA": 1})
    two = good_dir(tmp_path / "two", {"spkB": 1})
    (two / "utt2dur").unlink()
    notes = combine_data(tmp_path / "both", [one, two])
    assert any(n.startswith("utt2dur left out: missing from") and str(two) in n for n in notes)
    assert not (tmp_path / "both" / "utt2dur").exists() and errors_of(tmp_path / "both") == []


def test_speaker_converters_round_trip_through_stdin(tmp_path):
    utt2spk = "a-1 a\na-2 a\nb-1 b\n"
    spk2utt = run_tool("utt2spk_to_spk2utt.sh", stdin=utt2spk)
    assert spk2utt.returncode == 0 and spk2utt.stdout == "a a-1 a-2\nb b-1\n"
    back = run_tool("spk2utt_to_utt2spk.sh", stdin=spk2utt.stdout)
    assert back.stdout == utt2spk
    bad = run_tool("utt2spk_to_spk2utt.sh", stdin="a-1 a\na-2\n")
    assert bad.returncode == 1 and "<stdin> line 2: malformed line for 'a-2'" in bad.stderr


# --------------------------------------------------------------------------------------------------------------
# subset

def test_subset_modes(tmp_path):
    data = good_dir(tmp_path / "x")
    ids = sorted(read_kv(data / "utt2spk"), key=datadir.c_order)
    subset_data_dir(data, tmp_path / "first", "first", 2)
    assert list(read_kv(tmp_path / "first" / "utt2spk")) == ids[:2]
    subset_data_dir(data, tmp_path / "last", "last", 2)
    assert list(read_kv(tmp_path / "last" / "text")) == ids[-2:]
    subset_data_dir(data, tmp_path / "r1", "random", 3, seed=7)
    subset_data_dir(data, tmp_path / "r2", "random", 3, seed=7)
    assert files_of(tmp_path / "r1") == files_of(tmp_path / "r2") and len(read_kv(tmp_path / "r1" / "utt2spk")) == 3
    (tmp_path / "spk.list").write_text("spkB\nspkNone\n")
    result = run_tool("subset_data_dir.sh", "--spk-list", tmp_path / "spk.list", data, tmp_path / "spk")
    assert result.returncode == 0, result.stderr
    assert "1 of 2 speakers in" in result.stderr and "'spkNone'" in result.stderr
    assert read_kv(tmp_path / "spk" / "spk2utt") == {"spkB": "spkB-u0 spkB-u1 spkB-u2"}
    for sub in ("first", "last", "r1", "spk"):
        assert errors_of(tmp_path / sub) == []
    with pytest.raises(DataDirError, match="has 6 utterances, fewer than --first 7"):
        subset_data_dir(data, tmp_path / "big", "first", 7)


def test_subset_with_segments_keeps_only_needed_recordings(tmp_path):
    data = write_dir(tmp_path / "x", utt2spk="s-1 s\ns-2 s\ns-3 s\n", spk2utt="s s-1 s-2 s-3\n",
                     text="s-1 a\ns-2 b\ns-3 c\n", wav_scp="rec1 r1.wav\nrec2 r2.wav\n",
                     segments="s-1 rec1 0 1\ns-2 rec1 1 2\ns-3 rec2 0 1\n", reco2dur="rec1 2\nrec2 1\n")
    (tmp_path / "utts").write_text("s-2\n")
    subset_data_dir(data, tmp_path / "sub", "utt-list", tmp_path / "utts")
    assert read_kv(tmp_path / "sub" / "wav.scp") == {"rec1": "r1.wav"}
    assert read_kv(tmp_path / "sub" / "reco2dur") == {"rec1": "2"}
    assert errors_of(tmp_path / "sub") == []


# --------------------------------------------------------------------------------------------------------------
# speed perturbation of a data dir (the audio side is in test_dump_audio.py)

def test_perturb_prefixes_ids_and_scales_times(tmp_path):
    data = write_dir(tmp_path / "x", utt2spk="s-1 s\ns-2 s\n", spk2utt="s s-1 s-2\n", text="s-1 a\ns-2 b\n",
                     wav_scp="rec1 r1.wav\nrec2 cat r2.wav |\n", segments="s-1 rec1 0.9 1.8\ns-2 rec2 0 2.7\n",
                     utt2dur="s-1 0.9\ns-2 2.7\n", reco2dur="rec1 9\nrec2 2.7\n")
    result = run_tool("perturb_data_dir_speed.sh", "0.9", data, tmp_path / "sp")
    assert result.returncode == 0, result.stderr
    sp = tmp_path / "sp"
    assert read_kv(sp / "utt2spk") == {"sp0.9-s-1": "sp0.9-s", "sp0.9-s-2": "sp0.9-s"}
    assert read_kv(sp / "segments") == {"sp0.9-s-1": "sp0.9-rec1 1 2", "sp0.9-s-2": "sp0.9-rec2 0 3"}
    assert read_kv(sp / "utt2dur") == {"sp0.9-s-1": "1", "sp0.9-s-2": "3"}
    assert read_kv(sp / "reco2dur") == {"sp0.9-rec1": "10", "sp0.9-rec2": "3"}
    assert read_kv(sp / "wav.scp") == {"sp0.9-rec1": "python3 -m speechllm.data.speed 0.9 r1.wav |",
                                       "sp0.9-rec2": "cat r2.wav | python3 -m speechllm.data.speed 0.9 - |"}
    assert read_kv(sp / "utt2uniq") == {"sp0.9-s-1": "s-1", "sp0.9-s-2": "s-2"}
    assert read_kv(sp / "text") == {"sp0.9-s-1": "a", "sp0.9-s-2": "b"}
    assert errors_of(sp) == []


def test_perturb_combined_factors_into_one_dir(tmp_path):
    data = good_dir(tmp_path / "x", {"spkA": 2})
    write_kv(data / "utt2num_samples", {"spkA-u0": "16000", "spkA-u1": "1000"})
    merged, _ = perturb_speed(data, tmp_path / "sp", ["0.9", "1.0", "1.1"])
    assert len(merged.utt_ids) == 6
    samples = read_kv(tmp_path / "sp" / "utt2num_samples")
    assert samples == {"sp0.9-spkA-u0": "17778", "sp0.9-spkA-u1": "1112", "sp1.1-spkA-u0": "14546",
                       "sp1.1-spkA-u1": "910", "spkA-u0": "16000", "spkA-u1": "1000"}
    assert read_kv(tmp_path / "sp" / "utt2uniq")["spkA-u0"] == "spkA-u0"
    assert errors_of(tmp_path / "sp") == []
    result = run_tool("perturb_data_dir_speed.sh", "--factors", "0.9 abc", data, tmp_path / "bad")
    assert result.returncode == 1 and "speed factor 'abc' is not a number" in result.stderr


# --------------------------------------------------------------------------------------------------------------
# length filter

def test_filter_by_duration_and_words(tmp_path):
    data = good_dir(tmp_path / "x", {"spkA": 3, "spkB": 3})  # durations 1, 2, 3 s; 1, 2, 3 words
    write_kv(data / "utt2num_samples", {"spkA-u0": "800", "spkA-u1": "16000", "spkA-u2": "48000",
                                        "spkB-u0": "16000", "spkB-u1": "32000", "spkB-u2": "200000"})
    result = run_tool("filter_data_dir.sh", "--min_duration", "0.1", "--max_duration", "10", "--max_text_words", "2",
                      data, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert ("kept 3 of 6 utterances; removed: 1 shorter than 0.1 s, 1 longer than 10 s, 1 longer than 2 words"
            in result.stdout)
    assert (tmp_path / "out" / "filtered_out.txt").read_text().splitlines() == [
        "spkA-u0 shorter than 0.1 s (0.05 s)", "spkA-u2 longer than 2 words (3 words)",
        "spkB-u2 longer than 10 s (12.5 s)"]
    assert list(read_kv(tmp_path / "out" / "utt2spk")) == ["spkA-u1", "spkB-u0", "spkB-u1"]
    assert errors_of(tmp_path / "out") == []


def test_filter_uses_utt2dur_and_needs_some_duration(tmp_path):
    data = good_dir(tmp_path / "x", {"spkA": 3})  # utt2dur 1, 2, 3
    report = filter_data_dir(data, tmp_path / "out", Limits(min_duration=1.5, max_duration=2.5))
    assert report.kept == 1 and report.counts == {"short": 1, "long": 1}
    (data / "utt2dur").unlink()
    with pytest.raises(DataDirError, match="has neither utt2num_samples nor utt2dur") as error:
        filter_data_dir(data, tmp_path / "out2", Limits())
    assert "utils/dump_audio.sh" in str(error.value)


def test_tools_refuse_invalid_input_with_the_fix(tmp_path):
    data = good_dir(tmp_path / "x")
    write_dir(data, text="spkB-u0 w\nspkA-u0 w\nspkA-u1 w\nspkB-u1 w\nspkB-u2 w\nspkC-u0 w\n")
    result = run_tool("subset_data_dir.sh", "--first", "2", data, tmp_path / "y")
    assert result.returncode == 1
    assert f"{data / 'text'} line 2: id 'spkA-u0' comes after 'spkB-u0'" in result.stderr
    assert f"utils/fix_data_dir.sh {data} repairs most of them" in result.stderr


# --------------------------------------------------------------------------------------------------------------

def test_wrappers_pass_shellcheck():
    shellcheck = require_shellcheck()
    paths = [REPO / "utils" / name for name in WRAPPERS]
    assert all(os.access(p, os.X_OK) for p in paths)
    result = subprocess.run([str(shellcheck), *map(str, paths)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_datadir_module_imports_without_torch_or_numpy():
    code = ("import sys, speechllm.data.datadir, speechllm.data.validate, speechllm.data.fix, "
            "speechllm.data.split, speechllm.data.combine, speechllm.data.subset; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
