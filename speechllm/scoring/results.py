"""Collect ``score_{wer,cer}/result.txt`` files into an ESPnet-style RESULTS.md.

Besides the WER/CER tables: the decoding speed of each decode that stage 9 ran (RTFx: seconds of audio per second
of decoding, from the decode logs and the data dir's utt2num_samples), and, for a decode of all 8 English test sets
of the Open ASR leaderboard (data dirs ``esb_*``, speechllm.data.esb), their mean WER as the leaderboard computes it.
"""
from __future__ import annotations

import importlib.metadata
import platform
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

METRICS = {"score_wer": "WER", "score_cer": "CER"}
_ELAPSED = re.compile(r"elapsed time ([0-9.]+) seconds")
_DATA_ARG = re.compile(r"--data_path_and_name_and_type (\S+?),speech,")
# The Open ASR leaderboard's 8 English sets, as speechllm.data.esb names their data dirs (kept in sync by a test;
# importing esb here would pull the data package into scoring).
ESB_SETS = ("esb_ami", "esb_earnings22", "esb_gigaspeech", "esb_librispeech_test_clean", "esb_librispeech_test_other",
            "esb_spgispeech", "esb_tedlium", "esb_voxpopuli")
COLUMNS = ("Corr", "Sub", "Del", "Ins", "Err", "S.Err")
_HEADER = re.compile(r"\|\s*SPKR\s*\|")


@dataclass(frozen=True)
class ScoreSummary:
    dataset: str  # the decode directory relative to the experiment, e.g. "decode_beam5/test"
    metric: str  # "WER" or "CER"
    unit: str  # "Wrd" or "Chr", from the sclite table header
    sentences: int
    ref_tokens: int
    percents: tuple[float, ...]  # Corr Sub Del Ins Err S.Err


def parse_result(path: Path) -> tuple[str, int, int, tuple[float, ...]]:
    """(unit, sentences, reference tokens, percents) from the first sclite sys table of ``path``."""
    unit = None
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if _HEADER.search(line) and unit is None:
            unit = "Chr" if "# Chr" in line else "Wrd"
        if "Sum/Avg" in line:
            fields = line.split("|")
            try:
                counts = [int(v) for v in fields[2].split()]
                percents = tuple(float(v) for v in fields[3].split())
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{lineno}: cannot read the Sum/Avg line {line.strip()!r}") from None
            if len(counts) != 2 or len(percents) != len(COLUMNS):
                raise ValueError(f"{path}:{lineno}: expected '# Snt # Wrd | {' '.join(COLUMNS)}', got {line.strip()!r}")
            return unit or "Wrd", counts[0], counts[1], percents
    raise ValueError(f"{path}: no 'Sum/Avg' line; is it an sclite 'sum' report (result.txt)?")


def leaderboard_wer(score_dir: Path) -> float:
    """The WER (%) of a scored set as the Open ASR leaderboard computes it at the pinned commit of
    speechllm.scoring.normalize: jiwer's Levenshtein WER over the normalised texts (score_wer/ref.trn and hyp.trn,
    as score_text wrote them), rounded to 2 decimals. It can differ from sclite's, whose weighted alignment may count
    more errors."""
    import jiwer  # a dependency of the package; only this figure needs it

    def texts(trn: Path) -> list[str]:
        return [line.rpartition("(")[0].strip() for line in trn.read_text(encoding="utf-8").splitlines() if line]

    refs, hyps = texts(score_dir / "ref.trn"), texts(score_dir / "hyp.trn")
    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"{score_dir}: ref.trn and hyp.trn differ in length or are empty; score the set again")
    return round(100 * jiwer.wer(refs, hyps), 2)


def job_seconds(log: Path) -> float | None:
    """Elapsed seconds from a finished job's log footer ('... elapsed time 14.23 seconds'); None if unfinished."""
    found = _ELAPSED.findall(log.read_text(encoding="utf-8", errors="replace"))
    return float(found[-1]) if found else None


@dataclass(frozen=True)
class DecodeSpeed:
    dataset: str
    audio_seconds: float
    decode_seconds: float  # the decoding jobs' elapsed times added up (model loading included)
    jobs: int

    @property
    def rtfx(self) -> float:
        return self.audio_seconds / self.decode_seconds


def _existing(path_text: str, exp_dir: Path) -> Path | None:
    """A path from a decode log (relative to the recipe dir the job ran in) as it is seen from here."""
    for base in (Path.cwd(), exp_dir.parent, exp_dir.parent.parent):
        candidate = base / path_text
        if candidate.is_file():
            return candidate
    return None


def _sample_rate(scp: Path) -> int | None:
    """The sample rate of the first audio file a wav.scp names (the dumped sets have one rate)."""
    import soundfile  # a dependency of the package; imported here only where speed is measured

    first = scp.read_text(encoding="utf-8").split("\n", 1)[0].split(maxsplit=1)
    try:
        return soundfile.info(first[1]).samplerate if len(first) == 2 else None
    except (RuntimeError, OSError):  # a pipe or an ark entry, not a plain file
        return None


def decode_speed(exp_dir: Path, dataset: str) -> DecodeSpeed | None:
    """The speed of a stage 9 decode (EXP_DIR/DATASET/logdir/decode.*.log): the audio of the utterances it decoded
    (utt2num_samples beside the wav.scp its jobs read) over its jobs' summed elapsed times. None where something is
    missing: no logs (a rescoring), an unfinished job, audio features instead of audio (--dump_frontend)."""
    logdir = exp_dir / dataset / "logdir"
    logs = sorted(logdir.glob("decode.*.log"))
    seconds = [job_seconds(log) for log in logs]
    if not logs or None in seconds:
        return None
    command = _DATA_ARG.search(logs[0].read_text(encoding="utf-8", errors="replace"))
    scp = _existing(command.group(1), exp_dir) if command else None
    lengths = scp.parent / "utt2num_samples" if scp else None
    fs = _sample_rate(scp) if scp else None
    if lengths is None or not lengths.is_file() or not fs:
        return None
    samples = dict(line.split(maxsplit=1) for line in lengths.read_text(encoding="utf-8").splitlines() if line)
    decoded = [line.split(maxsplit=1)[0] for keys in logdir.glob("keys.*.scp")
               for line in keys.read_text(encoding="utf-8").splitlines() if line]
    if not decoded or any(utt not in samples for utt in decoded):
        return None
    audio = sum(int(samples[utt]) for utt in decoded) / fs
    return DecodeSpeed(dataset, audio, sum(seconds), len(logs)) if sum(seconds) > 0 else None


def leaderboard_means(exp_dir: Path, summaries: list[ScoreSummary]) -> list[tuple[str, float, list[float]]]:
    """(decode dir, mean WER, per-set WERs) for each decode dir holding all 8 Open ASR leaderboard sets: each set's
    WER (:func:`leaderboard_wer`), then their plain mean, as the leaderboard's eval_utils.score_results does (not
    the WER of the 8 sets pooled)."""
    roots: dict[str, dict[str, ScoreSummary]] = {}
    for row in summaries:
        root, _, name = row.dataset.rpartition("/")
        if row.metric == "WER" and name in ESB_SETS:
            roots.setdefault(root, {})[name] = row
    means = []
    for root, rows in roots.items():
        if len(rows) == len(ESB_SETS):
            wers = [leaderboard_wer(exp_dir / rows[name].dataset / "score_wer") for name in ESB_SETS]
            means.append((root or ".", sum(wers) / len(wers), wers))
    return means


def collect(exp_dir: Path) -> list[ScoreSummary]:
    summaries = []
    for metric_dir, metric in METRICS.items():
        for result in sorted(exp_dir.glob(f"**/{metric_dir}/result.txt")):
            dataset = result.parent.parent.relative_to(exp_dir).as_posix()
            unit, sentences, tokens, percents = parse_result(result)
            summaries.append(ScoreSummary(dataset, metric, unit, sentences, tokens, percents))
    return summaries


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def environment() -> list[str]:
    """The '## Environments' lines; the git commit is the one of the working directory."""
    lines = [
        f"- date: `{time.strftime('%a %b %d %H:%M:%S %Z %Y')}`",
        f"- python version: `{platform.python_version()}`",
        f"- speechllm version: `{_package_version('speechllm')}`",
        f"- pytorch version: `{_package_version('torch')}`",
    ]
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        lines.append("- Git hash: `none (not a git checkout, or no commit yet)`")
    else:
        lines.append(f"- Git hash: `{commit}`")
        lines.append(f"  - Commit date: `{_git('log', '-1', '--format=%cd') or 'unknown'}`")
    return lines


def to_markdown(exp_dir: Path, summaries: list[ScoreSummary]) -> str:
    lines = ["<!-- Generated by python -m speechllm.bin.make_results -->", "# RESULTS", "## Environments",
             *environment(), "", f"## {exp_dir.name}"]
    for metric in METRICS.values():
        rows = [s for s in summaries if s.metric == metric]
        if not rows:
            continue
        unit = rows[0].unit
        lines += [f"### {metric}", "", f"|dataset|Snt|{unit}|{'|'.join(COLUMNS)}|", "|---" * (3 + len(COLUMNS)) + "|"]
        for row in rows:
            percents = "|".join(f"{value:.1f}" for value in row.percents)
            lines.append(f"|{row.dataset}|{row.sentences}|{row.ref_tokens}|{percents}|")
        lines.append("")
    lines += nonspeech_section(exp_dir, summaries)
    lines += speed_section(exp_dir, summaries) + leaderboard_section(exp_dir, summaries)
    return "\n".join(lines) + "\n"


def nonspeech_section(exp_dir: Path, summaries: list[ScoreSummary]) -> list[str]:
    """The insertions on utterances without speech (empty references), from score_text's nonspeech.yaml."""
    import yaml

    rows = []
    for dataset in dict.fromkeys(s.dataset for s in summaries if s.metric == "WER"):
        path = exp_dir / dataset / "score_wer" / "nonspeech.yaml"
        if path.is_file():
            counts = yaml.safe_load(path.read_text(encoding="utf-8"))
            rows.append(f"|{dataset}|{counts['utterances']}|{counts['with_output']}|"
                        f"{100 * counts['with_output'] / counts['utterances']:.1f}|{counts['inserted']}|"
                        f"{counts['inserted'] / counts['utterances']:.2f}|")
    if not rows:
        return []
    return ["### Insertions on non-speech", "", "Utterances with an empty reference (noise, music, silence): how "
            "many got any output, and the words inserted on them.", "",
            "|dataset|utterances|with output|with output (%)|words inserted|per utterance|", "|---" * 6 + "|",
            *rows, ""]


def speed_section(exp_dir: Path, summaries: list[ScoreSummary]) -> list[str]:
    speeds = [decode_speed(exp_dir, d) for d in dict.fromkeys(s.dataset for s in summaries)]
    speeds = [s for s in speeds if s is not None]
    if not speeds:
        return []
    lines = ["### Decoding speed", "",
             "RTFx: seconds of audio per second of decoding; decoding is the decode jobs' elapsed times added up "
             "(model loading included; with one job, the wall-clock time).", "",
             "|dataset|audio (s)|decoding (s)|jobs|RTFx|", "|---|---|---|---|---|"]
    for speed in speeds:
        lines.append(f"|{speed.dataset}|{speed.audio_seconds:.1f}|{speed.decode_seconds:.1f}|{speed.jobs}|"
                     f"{speed.rtfx:.2f}|")
    return lines + [""]


def leaderboard_section(exp_dir: Path, summaries: list[ScoreSummary]) -> list[str]:
    means = leaderboard_means(exp_dir, summaries)
    if not means:
        return []
    lines = ["### Open ASR leaderboard (8 English sets)", "",
             "Each set's WER as the leaderboard computes it (jiwer on the normalised texts, 2 decimals) and their "
             "mean, as it reports it; comparable when scored with --score_normalize open_asr_leaderboard. "
             "RTFx: the 8 sets' audio over their decoding time.",
             "", f"|decode|mean WER|RTFx|{'|'.join(name[len('esb_'):] for name in ESB_SETS)}|",
             "|---" * (3 + len(ESB_SETS)) + "|"]
    for root, mean, wers in means:
        speeds = [decode_speed(exp_dir, f"{root}/{name}" if root != "." else name) for name in ESB_SETS]
        rtfx = (f"{sum(s.audio_seconds for s in speeds) / sum(s.decode_seconds for s in speeds):.2f}"
                if None not in speeds else "-")
        lines.append(f"|{root}|{mean:.2f}|{rtfx}|{'|'.join(f'{w:.2f}' for w in wers)}|")
    return lines + [""]
