"""Audio dumping (speechllm.data.dump, utils/dump_audio.sh) and speed perturbation of audio, on generated files."""
from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from speechllm.data.audio import read_scp_value, speed_pipe
from speechllm.data.datadir import read_kv, write_kv
from speechllm.data.dump import Settings, dump_part
from speechllm.data.validate import validate_data_dir
from test_datadir import REPO, run_tool

FS = 16000


def tone(seconds: float, hz: float = 440.0, fs: int = FS, channels: int = 1) -> np.ndarray:
    """A sine at half scale; channel c is scaled by 1/(c+1) so channels can be told apart."""
    t = np.arange(int(round(seconds * fs))) / fs
    wave = 0.5 * np.sin(2 * np.pi * hz * t)
    return wave if channels == 1 else np.stack([wave / (c + 1) for c in range(channels)], axis=1)


def make_data_dir(path: Path, wav_scp: dict[str, str], segments: dict[str, str] | None = None) -> Path:
    """A valid data dir, one speaker 's'; utterance ids are the wav.scp ids unless segments are given."""
    path.mkdir(parents=True, exist_ok=True)
    utts = list(segments or wav_scp)
    write_kv(path / "wav.scp", wav_scp)
    if segments:
        write_kv(path / "segments", segments)
    write_kv(path / "text", {u: f"words of {u}" for u in utts})
    write_kv(path / "utt2spk", {u: "s" for u in utts})
    write_kv(path / "spk2utt", {"s": " ".join(sorted(utts))})
    return path


def pcm16(samples: np.ndarray) -> np.ndarray:
    """What a 16-bit file written by write_wav (or by dump) holds for `samples`, read back as floats."""
    return np.clip(np.round(samples * 32768), -32768, 32767) / 32768


def write_wav(path: Path, samples: np.ndarray, fs: int = FS) -> None:
    """16-bit WAV holding exactly pcm16(samples) (libsndfile's own float conversion rounds differently)."""
    sf.write(path, (pcm16(samples) * 32768).astype(np.int16), fs, subtype="PCM_16")


@pytest.fixture
def bad_audio(tmp_path) -> dict[str, str]:
    """utt id -> path: one good file and one of each problem dump must catch."""
    audio = tmp_path / "audio"
    audio.mkdir()
    write_wav(audio / "good.wav", tone(0.5))
    write_wav(audio / "full.wav", tone(1.0))
    data = (audio / "full.wav").read_bytes()
    (audio / "truncated.wav").write_bytes(data[:len(data) // 2])
    write_wav(audio / "rate8k.wav", tone(0.5, fs=8000), 8000)
    write_wav(audio / "stereo.wav", tone(0.5, channels=2))
    nan = tone(0.1)
    nan[10] = np.nan
    sf.write(audio / "nan.wav", nan, FS, subtype="FLOAT")
    sf.write(audio / "empty.wav", np.zeros(0), FS, subtype="PCM_16")
    (audio / "noise.wav").write_bytes(b"this is not audio at all" * 10)
    sf.write(audio / "full.sph", (pcm16(tone(0.5)) * 32768).astype(np.int16), FS, format="NIST", subtype="PCM_16")
    (audio / "cut.sph").write_bytes((audio / "full.sph").read_bytes()[:-2000])
    names = ["good.wav", "truncated.wav", "rate8k.wav", "stereo.wav", "nan.wav", "empty.wav", "missing.wav",
             "noise.wav", "cut.sph"]
    return {f"s-{i}{name.split('.')[0]}": str(audio / name) for i, name in enumerate(names)}


def test_dump_reports_each_bad_file_with_line_and_fix_and_keeps_the_good(tmp_path, bad_audio):
    data = make_data_dir(tmp_path / "data", bad_audio)
    result = dump_part(data, tmp_path / "out", tmp_path / "dump" / "data", Settings())
    messages = [str(p) for p in result.problems]
    wav_scp = data / "wav.scp"
    expected = {  # line in wav.scp -> (what is said, the fix)
        2: ("is truncated: its WAV header declares 32000 bytes of samples but the file holds 15978",
            "re-extract or re-download"),
        3: ("the audio has sample rate 8000 Hz but --fs is 16000", "pass --resample true"),
        4: ("the audio has 2 channels", "pass --channel N"),
        5: ("the audio contains 1 NaN or infinite samples", "regenerate the audio"),
        6: ("the audio is empty (0 samples)", "utils/fix_data_dir.sh"),
        7: (f"audio file '{bad_audio['s-6missing']}' does not exist", "correct the path in wav.scp"),
        8: ("cannot be read", "convert it with ffmpeg"),
        9: ("is truncated: its NIST SPHERE header declares 8000 samples but the file holds 7000", "re-extract"),
    }
    assert len(messages) == len(expected)
    for line, (said, fix) in expected.items():
        utt = list(bad_audio)[line - 1]
        match = [m for m in messages if m.startswith(f"{wav_scp} line {line}: utterance '{utt}': ")]
        assert len(match) == 1 and said in match[0] and "Fix: " in match[0] and fix in match[0], (line, messages)
    assert result.num_samples == {"s-0good": 8000}
    assert sf.info(str(tmp_path / "dump" / "data" / "s-0good.flac")).frames == 8000
    assert not (tmp_path / "out").exists()  # a part with problems writes no data dir


def test_resample_and_channel_options_fix_those_files(tmp_path, bad_audio):
    keep = {u: p for u, p in bad_audio.items() if u.endswith(("good", "rate8k"))}
    data = make_data_dir(tmp_path / "rate", keep)
    result = dump_part(data, tmp_path / "out", tmp_path / "audio_out", Settings(resample=True))
    assert result.problems == [] and result.num_samples == {"s-0good": 8000, "s-2rate8k": 8000}
    resampled, fs = sf.read(tmp_path / "audio_out" / "s-2rate8k.flac")
    assert fs == FS
    inner = slice(400, -400)  # away from the filter's edge effects
    assert np.max(np.abs(resampled[inner] - tone(0.5)[inner])) < 2e-3

    data = make_data_dir(tmp_path / "stereo", {"s-3stereo": bad_audio["s-3stereo"]})
    result = dump_part(data, tmp_path / "out2", tmp_path / "audio2", Settings(channel=1))
    picked, _ = sf.read(tmp_path / "audio2" / "s-3stereo.flac")
    assert np.array_equal(picked, pcm16(tone(0.5, channels=2)[:, 1]))
    result = dump_part(data, tmp_path / "out3", tmp_path / "audio3", Settings(channel=2))
    assert "so --channel 2 does not exist" in str(result.problems[0]) and "between 0 and 1" in str(result.problems[0])


def test_pipes_ark_entries_and_segments(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    recording = tone(2.0, hz=300)
    write_wav(audio / "rec.wav", recording)
    ints = (pcm16(recording) * 32768).astype(np.int16)
    kaldiio.save_ark(str(audio / "wav.ark"), {"rec": (FS, ints)}, scp=str(audio / "ark.scp"))
    ark_entry = read_kv(audio / "ark.scp")["rec"]
    wav_scp = {"p-ark": ark_entry, "p-pipe": f"cat {audio / 'rec.wav'} |", "p-file": str(audio / "rec.wav")}
    segments = {"s-1": "p-pipe 0.5 1.25", "s-2": "p-ark 0 0.5", "s-3": "p-file 1.5 2.3"}
    data = make_data_dir(tmp_path / "data", wav_scp, segments)
    out = tmp_path / "out"
    result = dump_part(data, out, tmp_path / "dumped", Settings(audio_format="wav"))
    assert result.problems == []
    assert read_kv(out / "utt2num_samples") == {"s-1": "12000", "s-2": "8000", "s-3": "8000"}  # s-3 cut at the end
    expected = {"s-1": pcm16(recording)[8000:20000], "s-2": pcm16(recording)[:8000],
                "s-3": pcm16(recording)[24000:]}
    for utt, samples in expected.items():
        assert np.array_equal(sf.read(tmp_path / "dumped" / f"{utt}.wav")[0], samples), utt
    assert read_kv(out / "wav.scp")["s-1"] == str(tmp_path / "dumped" / "s-1.wav")
    assert [p for p in validate_data_dir(out) if p.severity == "error"] == []

    write_kv(data / "segments", {"s-1": "p-pipe 0.5 1.25", "s-2": "p-ark 0 0.5", "s-3": "p-file 2.6 3"})
    write_kv(data / "wav.scp", dict(wav_scp, **{"p-pipe": "exit 3 |"}))
    result = dump_part(data, tmp_path / "out2", tmp_path / "dumped2", Settings())
    messages = [str(p) for p in result.problems]
    assert any(m.startswith(f"{data / 'wav.scp'} line 3: recording 'p-pipe' (1 utterance(s), e.g. 's-1'): "
                            "command 'exit 3 |' failed with exit status 3") for m in messages), messages
    assert any(m.startswith(f"{data / 'segments'} line 3: utterance 's-3': segment 2.6-3 s runs past the end of "
                            "the recording (2 s)") for m in messages), messages


def test_dump_resumes_only_what_is_missing_or_changed(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    wav_scp = {}
    for i in range(3):
        write_wav(audio / f"{i}.wav", tone(0.2 + 0.1 * i))
        wav_scp[f"s-{i}"] = str(audio / f"{i}.wav")
    data = make_data_dir(tmp_path / "data", wav_scp)
    dumped = tmp_path / "dumped"
    first = dump_part(data, tmp_path / "out", dumped, Settings())
    assert (len(first.num_samples), first.reused) == (3, 0)
    again = dump_part(data, tmp_path / "out", dumped, Settings())
    assert again.reused == 3 and again.num_samples == first.num_samples
    stale = dumped / "s-1.flac"
    stale.write_bytes(stale.read_bytes()[:-200])  # a cut output file (header intact) is redone
    write_wav(audio / "2.wav", tone(0.7))
    write_kv(data / "wav.scp", dict(wav_scp, **{"s-2": f"cat {audio / '2.wav'} |"}))  # a changed entry is redone
    third = dump_part(data, tmp_path / "out", dumped, Settings())
    assert third.reused == 1 and third.num_samples == {"s-0": 3200, "s-1": 4800, "s-2": 11200}
    assert sf.info(str(stale)).frames == 4800


@pytest.mark.parametrize("factor", ["0.9", "1.1"])
def test_speed_perturbation_changes_length_tempo_and_pitch(tmp_path, factor):
    path = tmp_path / "a.wav"
    samples = tone(1.0, hz=1000)
    write_wav(path, samples)
    piped = subprocess.run([sys.executable, "-m", "speechllm.data.speed", factor, str(path)], cwd=REPO,
                           capture_output=True, check=True).stdout
    out, fs = sf.read(io.BytesIO(piped))
    assert fs == FS and abs(len(out) - len(samples) / float(factor)) <= 1
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * FS / len(out)
    assert abs(peak_hz - 1000 * float(factor)) < 2
    in_process = read_scp_value(speed_pipe(factor, str(path))).samples[:, 0]  # dump's path, no subprocess
    assert np.array_equal(pcm16(in_process), out)


def test_dump_audio_sh_runs_parts_through_the_launcher_and_resumes(tmp_path, bad_audio):
    launcher = REPO / "utils" / "local.py"
    if not launcher.exists():
        pytest.skip("utils/local.py (the job launcher) is not in this checkout")
    wav_scp = {u: p for u, p in bad_audio.items() if u.endswith(("good", "stereo"))}
    wav_scp["s-9piped"] = f"cat {bad_audio['s-0good']} |"
    data = make_data_dir(tmp_path / "data", wav_scp)
    result = run_tool("perturb_data_dir_speed.sh", "--factors", "0.9 1.0", data, tmp_path / "data_sp")
    assert result.returncode == 0, result.stderr
    dump = tmp_path / "dump"
    options = ["--nj", "2", "--cmd", f"{launcher} --max_jobs_run 2", tmp_path / "data_sp", dump]
    failed = run_tool("dump_audio.sh", *options)
    assert failed.returncode == 1
    sp_wav_scp = tmp_path / "data_sp" / "wav.scp"
    assert (f"{sp_wav_scp} line 2: utterance 's-3stereo': the audio has 2 channels. Fix: pass --channel N"
            in failed.stderr)
    assert f"{sp_wav_scp} line 5: utterance 'sp0.9-s-3stereo'" in failed.stderr
    assert "run the same command again: utterances already dumped are kept" in failed.stderr

    done = run_tool("dump_audio.sh", "--channel", "0", *options)
    assert done.returncode == 0, done.stderr
    logs = "".join(p.read_text() for p in sorted((dump / "logs").glob("dump.*.log")))
    assert logs.count("reused from an earlier run") == 2
    written_now = sum(int(line.split(": ")[-1].split()[0]) for line in logs.splitlines() if line.startswith("done:"))
    assert written_now == 2  # only the two stereo utterances
    num_samples = read_kv(dump / "utt2num_samples")
    assert num_samples == {"s-0good": "8000", "s-3stereo": "8000", "s-9piped": "8000", "sp0.9-s-0good": "8889",
                           "sp0.9-s-3stereo": "8889", "sp0.9-s-9piped": "8889"}
    for utt, path in read_kv(dump / "wav.scp").items():
        assert path == str(dump / "data" / f"{utt}.flac") and sf.info(path).frames == int(num_samples[utt])
    assert read_kv(dump / "text")["sp0.9-s-9piped"] == "words of s-9piped"
    assert read_kv(dump / "utt2uniq")["sp0.9-s-9piped"] == "s-9piped"
    assert [p for p in validate_data_dir(dump) if p.severity == "error"] == []


def recipe_options() -> set:
    """The options of run.sh: speechllm.sh's `name=value` lines between BEGIN OPTIONS and END OPTIONS."""
    text = (REPO / "egs2" / "TEMPLATE" / "speechllm1" / "speechllm.sh").read_text()
    block = text.split("# BEGIN OPTIONS", 1)[1].split("# END OPTIONS", 1)[0]
    return {"--" + line.split("=", 1)[0] for line in block.splitlines() if re.match(r"[a-z_]+=", line)}


def tool_options(name: str) -> set:
    shown = run_tool(name, "--help")
    assert shown.returncode == 0, shown.stderr
    return set(re.findall(r"--[a-z][a-z_-]*", shown.stdout))


def test_every_suggested_option_is_accepted_where_it_is_suggested(tmp_path, bad_audio):
    """A fix that says 'pass --x' names an option that the recipe (run.sh) and the tool really take."""
    data = make_data_dir(tmp_path / "data", bad_audio)
    dump_fixes = " ".join(p.fix for p in dump_part(data, tmp_path / "out", tmp_path / "a", Settings()).problems)
    suggested = set(re.findall(r"--[a-z][a-z_-]*", dump_fixes))
    assert {"--resample", "--channel", "--fs"} <= suggested
    assert suggested <= recipe_options(), f"run.sh rejects {sorted(suggested - recipe_options())}"
    assert suggested <= tool_options("dump_audio.sh")

    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "wav.scp").write_text("b-1 x.wav\nc-1 y.wav\n")
    (odd / "utt2spk").write_text("b-1 z\nc-1 a\n")
    (odd / "spk2utt").write_text("a c-1\nz b-1\n")
    problems = validate_data_dir(odd)
    (odd / "text").write_text("b-1\nc-1 w\n")
    problems += validate_data_dir(odd)
    validate = tool_options("validate_data_dir.sh")
    for problem in problems:
        for option in re.findall(r"--[a-z][a-z_-]*", problem.fix):
            assert option in validate and f"pass {option} to utils/validate_data_dir.sh" in problem.fix, problem
    assert {"--no-text", "--allow-empty-text", "--no-spk-sort"} <= set(re.findall(r"--[a-z][a-z_-]*",
                                                                                  " ".join(p.fix for p in problems)))


# ---------------------------------------------------------------------------------------------- progress


def twenty_utterances(tmp_path: Path) -> Path:
    audio = tmp_path / "audio20"
    audio.mkdir()
    wav_scp = {}
    for i in range(20):
        write_wav(audio / f"u{i:02d}.wav", tone(0.05))
        wav_scp[f"s-u{i:02d}"] = str(audio / f"u{i:02d}.wav")
    return make_data_dir(tmp_path / "data20", wav_scp)


def test_dump_logs_one_line_per_10_percent_when_not_on_a_terminal(tmp_path, capsys):
    data = twenty_utterances(tmp_path)
    dump_part(data, tmp_path / "out", tmp_path / "a", Settings())
    lines = [line for line in capsys.readouterr().err.splitlines() if "progress" in line]
    assert lines == [f"dump {data}: progress {p}% ({p // 5} of 20 utterances)" for p in range(10, 101, 10)]


def test_dump_shows_a_progress_bar_on_a_terminal(tmp_path):
    import os
    import pty

    data = twenty_utterances(tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "speechllm.data.dump", "--audio_dir", str(tmp_path / "a"),
                             str(data), str(tmp_path / "out")], cwd=REPO, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    shown = b"".join(chunks).decode(errors="replace")
    assert "\r" in shown and "100%|" in shown and "20/20" in shown, shown  # tqdm redraws one line
    assert "progress 10%" not in shown


def test_dump_audio_sh_reports_overall_progress_of_its_jobs(tmp_path):
    data = twenty_utterances(tmp_path)
    done = run_tool("dump_audio.sh", "--nj", "2", "--cmd", str(REPO / "utils" / "local.py"), data, tmp_path / "dump")
    assert done.returncode == 0, done.stderr
    overall = [line for line in done.stderr.splitlines() if line.startswith("utils/dump_audio.sh: dump ")]
    assert overall and overall[-1] == f"utils/dump_audio.sh: dump {data}: progress 100% (20 of 20 utterances)"
    log = (tmp_path / "dump" / "logs" / "dump.1.log").read_text()
    assert "progress 100% (10 of 10 utterances)" in log
