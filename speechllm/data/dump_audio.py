"""utils/dump_audio.sh: dump a data dir's audio to one file per utterance, in parallel jobs, as ESPnet's
format_wav_scp.sh.

    utils/dump_audio.sh [--nj 4] [--cmd utils/local.py] [--fs 16000] [--audio_format flac|wav]
                        [--resample false] [--channel -1] data/x dump/raw/x

Splits data/x into nj parts (dump/raw/x/logs/split{nj}/JOB), runs `python3 -m speechllm.data.dump` on each through
`$cmd JOB=1:nj dump/raw/x/logs/dump.JOB.log ...`, and combines the parts into dump/raw/x: wav.scp pointing to
dump/raw/x/data/<utt>.<format>, utt2num_samples, text, utt2spk, spk2utt (validated). When a job fails, its
problems (file, line, fix) are shown; rerunning the same command redoes only what is missing. Progress over all
jobs: a bar on a terminal, a line per 10 % otherwise (each job's log has its own lines).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import speechllm
from speechllm.data.cli import run_tool
from speechllm.data.combine import merge_data_dirs
from speechllm.data.datadir import DataDir, DataDirError, Problem
from speechllm.data.dump import DONE, Settings, add_audio_options, check_file_names, settings_from
from speechllm.data.progress import Progress, parse_progress
from speechllm.data.split import split_data
from speechllm.data.validate import require_valid

PROG = "utils/dump_audio.sh"
SHOWN_PROBLEMS = 30
POLL_SECONDS = 0.5  # how often the jobs' logs are read for progress


def job_command(cmd: str, nj: int, data_dir: Path, out_dir: Path, settings: Settings) -> list[str]:
    logs = out_dir / "logs"
    return shlex.split(cmd) + [
        f"JOB=1:{nj}", str(logs / "dump.JOB.log"),
        sys.executable, "-m", "speechllm.data.dump",
        "--fs", str(settings.fs), "--audio_format", settings.audio_format,
        "--resample", str(settings.resample).lower(), "--channel", str(settings.channel),
        "--orig_data_dir", str(data_dir), "--audio_dir", str(out_dir / "data"),
        str(logs / f"split{nj}" / "JOB"), str(logs / f"dumped{nj}" / "JOB"),
    ]


def run_jobs(argv: list[str], progress: Progress | None = None, logs: list[Path] = ()) -> int:
    """Run the launcher with speechllm importable by the jobs, wherever they start; while it runs, `progress`
    follows the progress lines the jobs write to `logs`."""
    env = dict(os.environ)
    package_root = str(Path(speechllm.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    try:
        launcher = subprocess.Popen(argv, env=env)
    except OSError as error:
        raise DataDirError(Problem("--cmd", None, f"cannot run '{argv[0]}' ({error.strerror})",
                                   "run from the recipe directory (where utils/ is), or pass --cmd with the path "
                                   "of a launcher such as utils/local.py")) from None
    try:
        while True:
            try:
                code = launcher.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if progress is not None:
                progress.advance_to(jobs_done(logs))
    except BaseException:  # Ctrl-C: the launcher got it too and stops its jobs
        launcher.wait()
        raise
    if progress is not None:
        if code == 0:
            progress.advance_to(jobs_done(logs))
        progress.close()
    return code


def jobs_done(logs: list[Path]) -> int:
    """Utterances the jobs have dealt with so far, from the last progress line of each log."""
    done = 0
    for log in logs:
        try:
            found = parse_progress(log.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        done += found[0] if found else 0
    return done


def failure_report(logs: Path, nj: int) -> list[str]:
    """The problems the failed jobs logged (or the end of their logs when they logged none)."""
    problems, failed = [], []
    for job in range(1, nj + 1):
        log = logs / f"dump.{job}.log"
        text = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
        if any(line.startswith(DONE) for line in text):
            continue
        failed.append(str(log))
        found = [line.removeprefix("error: ") for line in text if line.startswith("error: ")]
        problems += found or [f"{log} (last lines): " + " | ".join(text[-3:] or ["(empty or missing)"])]
    if not failed:
        return ["the launcher given by --cmd failed although every job logged success; see its messages above"]
    lines = problems[:SHOWN_PROBLEMS]
    if len(problems) > SHOWN_PROBLEMS:
        lines.append(f"... and {len(problems) - SHOWN_PROBLEMS} more problems in the logs")
    shown_logs = ", ".join(failed[:3]) + (" ..." if len(failed) > 3 else "")
    lines.append(f"{len(failed)} of {nj} job(s) failed (logs: {shown_logs}); fix the problems above and run the "
                 "same command again: utterances already dumped are kept")
    return lines


def dump_audio(data_dir: str | Path, out_dir: str | Path, settings: Settings, nj: int = 4,
               cmd: str = "utils/local.py") -> DataDir:
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if nj < 1:
        raise DataDirError(Problem("--nj", None, f"must be at least 1, not {nj}", "pass --nj 4, say"))
    require_valid(data_dir)
    data = DataDir.read(data_dir)
    check_file_names(data)
    nj = min(nj, len(data.utt_ids))
    logs = out_dir / "logs"
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    split_data(data_dir, nj, per_utt=True, out_root=logs / f"split{nj}")
    shutil.rmtree(logs / f"dumped{nj}", ignore_errors=True)  # parts of an earlier run
    for job in range(1, nj + 1):
        (logs / f"dump.{job}.log").unlink(missing_ok=True)
    progress = Progress(len(data.utt_ids), f"{PROG}: dump {data_dir}")
    job_logs = [logs / f"dump.{job}.log" for job in range(1, nj + 1)]
    if run_jobs(job_command(cmd, nj, data_dir, out_dir, settings), progress, job_logs) != 0:
        raise DataDirError(failure_report(logs, nj))
    parts = [DataDir.read(logs / f"dumped{nj}" / str(job)) for job in range(1, nj + 1)]
    merged, notes = merge_data_dirs(parts)
    for note in notes + merged.write(out_dir):
        print(f"{PROG}: note: {note}", file=sys.stderr)
    require_valid(out_dir)
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Dump audio to one file per utterance.")
    parser.add_argument("--nj", type=int, default=4, help="number of parallel jobs (default 4)")
    parser.add_argument("--cmd", default="utils/local.py",
                        help="job launcher, called as: $cmd JOB=1:nj log.JOB.log command... (default utils/local.py)")
    add_audio_options(parser)
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    settings = settings_from(args)

    def body() -> int:
        merged = dump_audio(args.data_dir, args.out_dir, settings, args.nj, args.cmd)
        seconds = sum(int(n) for n in merged.files["utt2num_samples"].values()) / settings.fs
        print(f"{PROG}: wrote {args.out_dir}: {len(merged.utt_ids)} utterances, {seconds:.1f} s "
              f"({seconds / 3600:.2f} h) at {settings.fs} Hz")
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
