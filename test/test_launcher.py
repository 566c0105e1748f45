"""utils/local.py: Kaldi's run.pl interface on this machine (parallelism, substitution, logs, reruns, signals)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from speechllm.launch.common import compress_indices, logged_exit_code, quote_command_line

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "utils" / "local.py"

# A task that records when it ran, its argv and environment, and fails on request:
#   task.py RECORD FAIL_UNLESS SECONDS [ARG ...]   fails with code 3 while the file FAIL_UNLESS is missing
#   ("-": never fails); appends its name to runs.txt so that tests can count the runs.
TASK_SCRIPT = """\
import json, os, sys, time
record, fail_unless, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
start = time.time()
time.sleep(seconds)
with open(record, "w") as f:
    json.dump({"start": start, "end": time.time(), "argv": sys.argv[4:], "pid": os.getpid(),
               "omp": os.environ.get("OMP_NUM_THREADS"), "mkl": os.environ.get("MKL_NUM_THREADS"),
               "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}, f)
with open("runs.txt", "a") as f:
    f.write(record + "\\n")
print("stdout line of " + record)
print("stderr line of " + record, file=sys.stderr)
if fail_unless != "-" and not os.path.exists(fail_unless):
    sys.exit(3)
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "task.py").write_text(TASK_SCRIPT)
    return tmp_path


def task(*args: str) -> list[str]:
    return [sys.executable, "task.py", *args]


def launch(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(LAUNCHER), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
        env={**os.environ, **(env or {})},
    )


def record(cwd: Path, name: str) -> dict:
    return json.loads((cwd / name).read_text())


def max_overlap(records: list[dict]) -> int:
    """The largest number of tasks running at the same instant, from their own timestamps."""
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = peak = 0
    for _, step in events:  # at equal times the end (-1) sorts first: touching intervals do not overlap
        running += step
        peak = max(peak, running)
    return peak


def runs(cwd: Path) -> list[str]:
    return (cwd / "runs.txt").read_text().split()


def test_max_jobs_run_caps_parallel_tasks(workdir):
    result = launch(workdir, "--max_jobs_run", "2", "JOB=1:6", "log/p.JOB.log", *task("p.JOB.json", "-", "0.4"))
    assert result.returncode == 0, result.stderr
    assert max_overlap([record(workdir, f"p.{i}.json") for i in range(1, 7)]) == 2


def test_without_max_jobs_run_all_tasks_run_at_once(workdir):
    result = launch(workdir, "JOB=1:4", "log/p.JOB.log", *task("p.JOB.json", "-", "0.8"))
    assert result.returncode == 0, result.stderr
    assert max_overlap([record(workdir, f"p.{i}.json") for i in range(1, 5)]) == 4


def test_range_variable_is_substituted_in_log_and_arguments(workdir):
    result = launch(workdir, "SPLIT=2:4", "exp/SPLIT/log/x.SPLIT.log", *task("r.SPLIT.json", "-", "0", "part-SPLIT"))
    assert result.returncode == 0, result.stderr
    for index in (2, 3, 4):
        assert record(workdir, f"r.{index}.json")["argv"] == [f"part-{index}"]
        assert logged_exit_code(workdir / f"exp/{index}/log/x.{index}.log") == 0
    assert not (workdir / "r.1.json").exists() and not (workdir / "exp/1").exists()


TRICKY_ARGS = [
    "two words", "it's", '"double"', "$(touch PWNED)", "; touch PWNED", "`touch PWNED`", "a|b>c&", "*", "",
    "$HOME", "line\nbreak\ttab", "back\\slash", "ünïcødé",
]


def test_arguments_reach_the_command_unchanged_and_header_pastes_back(workdir):
    result = launch(workdir, "JOB=1:1", "log/q.JOB.log", *task("q.json", "-", "0", *TRICKY_ARGS))
    assert result.returncode == 0, result.stderr
    assert record(workdir, "q.json")["argv"] == TRICKY_ARGS
    assert not list(workdir.glob("PWNED*"))
    header = (workdir / "log/q.1.log").read_text().split("\n", 1)[0]
    assert header == "# " + quote_command_line(task("q.json", "-", "0", *TRICKY_ARGS))
    # Pasted into bash, the header's command line gives back the very same argv.
    pasted = subprocess.run(["bash", "-c", "printf '%s\\0' " + header[2:]], capture_output=True, text=True)
    assert pasted.stdout.split("\0")[:-1] == task("q.json", "-", "0", *TRICKY_ARGS)


def test_failing_task_gives_nonzero_exit_naming_task_and_log(workdir):
    (workdir / "ok.1").touch()
    result = launch(workdir, "JOB=1:3", "log/f.JOB.log", *task("f.JOB.json", "ok.JOB", "0"))
    assert result.returncode == 1
    assert "2 of 3 task(s) failed" in result.stderr and "JOB=1:" not in result.stderr
    for index in (2, 3):
        assert f"JOB={index}: exit code 3, log: log/f.{index}.log" in result.stderr
        assert logged_exit_code(workdir / f"log/f.{index}.log") == 3
    assert logged_exit_code(workdir / "log/f.1.log") == 0
    assert "| stderr line of f.2.json" in result.stderr  # the tail of the first failed log


def test_log_has_header_output_and_footer(workdir):
    result = launch(workdir, "--num_threads", "3", "--mem", "2G", "--time", "1:00:00",
                    "JOB=1:1", "log/h.JOB.log", *task("h.json", "-", "1.2"))
    assert result.returncode == 0, result.stderr
    lines = (workdir / "log/h.1.log").read_text().splitlines()
    assert lines[0] == "# " + quote_command_line(task("h.json", "-", "1.2"))
    assert lines[1] == f"# Running on {socket.gethostname()}"
    assert lines[2].startswith("# Started at ") and lines[3] == "#"
    assert set(lines[4:6]) == {"stdout line of h.json", "stderr line of h.json"}
    assert lines[7].startswith("# Ended (code 0) at ") and lines[7].endswith(" seconds")
    elapsed = float(lines[7].split("elapsed time ")[1].split()[0])
    assert 1.2 <= elapsed < 10
    accounted = lines[6].removeprefix("# Accounting: time=").split(" threads=")
    assert accounted[1] == "3" and abs(int(accounted[0]) - elapsed) <= 0.51  # whole seconds, as Kaldi's
    assert record(workdir, "h.json")["omp"] == "3" and record(workdir, "h.json")["mkl"] == "3"


def test_rerun_skips_succeeded_tasks_and_reruns_the_failed_one(workdir):
    for index in (1, 3):
        (workdir / f"fixed.{index}").touch()
    args = ["JOB=1:3", "log/r.JOB.log", *task("r.JOB.json", "fixed.JOB", "0")]
    assert launch(workdir, *args).returncode == 1
    kept = {index: (workdir / f"log/r.{index}.log").read_text() for index in (1, 3)}

    (workdir / "fixed.2").touch()
    second = launch(workdir, *args)
    assert second.returncode == 0, second.stderr
    assert "skipping 2 of 3 tasks (JOB=1,3)" in second.stderr and "--rerun_all true" in second.stderr
    assert sorted(runs(workdir)[:3]) == ["r.1.json", "r.2.json", "r.3.json"] and runs(workdir)[3:] == ["r.2.json"]
    assert {index: (workdir / f"log/r.{index}.log").read_text() for index in (1, 3)} == kept
    assert logged_exit_code(workdir / "log/r.2.log") == 0

    assert launch(workdir, "--rerun_all", "true", *args).returncode == 0
    assert len(runs(workdir)) == 7
    # A different command line in the same logs is not "already done".
    assert launch(workdir, "JOB=1:3", "log/r.JOB.log", *task("r.JOB.json", "fixed.JOB", "0", "new")).returncode == 0
    assert len(runs(workdir)) == 10


def test_form_without_range_runs_once_and_leaves_job_alone(workdir):
    result = launch(workdir, "--max_jobs_run", "4", "single.log", *task("s.json", "-", "0", "JOB"))
    assert result.returncode == 0, result.stderr
    assert record(workdir, "s.json")["argv"] == ["JOB"]
    assert logged_exit_code(workdir / "single.log") == 0
    again = launch(workdir, "single.log", *task("s.json", "-", "0", "JOB"))
    assert again.returncode == 0 and "skipping the task" in again.stderr


def test_gpu_option_gives_each_running_task_its_own_devices(workdir):
    result = launch(workdir, "--gpu", "2", "JOB=1:4", "log/g.JOB.log", *task("g.JOB.json", "-", "0.5"),
                    env={"CUDA_VISIBLE_DEVICES": "3,5,7,9"})
    assert result.returncode == 0, result.stderr
    records = [record(workdir, f"g.{i}.json") for i in range(1, 5)]
    assert all(len(set(r["cuda"].split(","))) == 2 and set(r["cuda"].split(",")) <= {"3", "5", "7", "9"}
               for r in records)
    for a in records:
        for b in records:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert not set(a["cuda"].split(",")) & set(b["cuda"].split(","))
    assert max_overlap(records) == 2


def test_gpu_option_without_gpus_is_ignored_with_a_note(workdir):
    result = launch(workdir, "--gpu", "1", "g.log", *task("g.json", "-", "0"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr
    assert "--gpu 1 ignored: no GPU is visible" in result.stderr
    assert record(workdir, "g.json")["cuda"] == ""


def test_missing_command_fails_with_code_127_in_log(workdir):
    result = launch(workdir, "m.log", "./no-such-program", "x")
    assert result.returncode == 1
    assert "cannot run './no-such-program'" in (workdir / "m.log").read_text()
    assert logged_exit_code(workdir / "m.log") == 127


@pytest.mark.parametrize(
    "args, message",
    [
        (["JOB=0:3", "l.JOB.log", "true"], "bad task range 'JOB=0:3'"),
        (["JOB=4:2", "l.JOB.log", "true"], "bad task range 'JOB=4:2'"),
        (["JOB=1-4", "l.JOB.log", "true"], "bad task range 'JOB=1-4': write VAR=START:END"),
        (["JOB=1:4", "log/all.log", "true"], "would share the log file log/all.log: put JOB in the log path"),
        (["--foo", "1", "l.log", "true"], "unknown option(s) --foo"),
        (["--max_jobs_run", "x", "l.log", "true"], "--max_jobs_run must be an integer >= 1, got 'x'"),
        (["--rerun_all", "maybe", "l.log", "true"], "--rerun_all takes true or false"),
        (["--num_nodes", "2", "l.log", "true"], "use utils/slurm.py"),
        (["l.log"], "expected a log file and a command"),
        (["--gpu"], "option --gpu needs a value"),
    ],
)
def test_bad_command_lines_are_explained(workdir, args, message):
    result = launch(workdir, *args)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert not list(workdir.glob("*.log"))


def test_sigterm_stops_running_tasks_and_their_children(workdir):
    child = "import os, subprocess, sys; p = subprocess.Popen(['sleep', '60']); " \
            "open(sys.argv[1], 'w').write(f'{os.getpid()} {p.pid}'); p.wait()"
    launcher = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--max_jobs_run", "2", "JOB=1:3", "log/k.JOB.log",
         sys.executable, "-c", child, "pids.JOB"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 10
    while not all((workdir / f"pids.{i}").exists() and (workdir / f"pids.{i}").read_text() for i in (1, 2)):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.05)
    pids = [int(pid) for i in (1, 2) for pid in (workdir / f"pids.{i}").read_text().split()]
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=20)
    assert launcher.returncode == 128 + signal.SIGTERM
    assert "SIGTERM: stopped 2 running task(s), 1 not started" in stderr
    for pid in pids:
        assert not _alive(pid), f"process {pid} survived the launcher's SIGTERM"
    assert logged_exit_code(workdir / "log/k.1.log") == 128 + signal.SIGTERM
    assert not (workdir / "log/k.3.log").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its parent to reap it no longer runs.
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_compress_indices_writes_sbatch_array_syntax():
    assert compress_indices([7, 1, 2, 3, 5, 8]) == "1-3,5,7-8"
    assert compress_indices([4]) == "4"


# ---------------------------------------------------------------------------------------------- faults


def test_sigkill_of_the_launcher_still_stops_its_tasks_and_their_children(workdir):
    """kill -9 cannot be caught: the launcher's guard process stops the orphaned tasks and closes their logs."""
    child = "import os, subprocess, sys; p = subprocess.Popen(['sleep', '60']); " \
            "open(sys.argv[1], 'w').write(f'{os.getpid()} {p.pid}'); p.wait()"
    launcher = subprocess.Popen(
        [sys.executable, str(LAUNCHER), "JOB=1:2", "log/k.JOB.log", sys.executable, "-c", child, "pids.JOB"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not all((workdir / f"pids.{i}").exists() and (workdir / f"pids.{i}").read_text() for i in (1, 2)):
        assert time.monotonic() < deadline and launcher.poll() is None
        time.sleep(0.05)
    pids = [int(pid) for i in (1, 2) for pid in (workdir / f"pids.{i}").read_text().split()]
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in pids if _alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert not survivors, f"processes {survivors} kept running after the launcher was killed with SIGKILL"
    deadline = time.monotonic() + 5
    while logged_exit_code(workdir / "log/k.1.log") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert logged_exit_code(workdir / "log/k.1.log") == 128 + signal.SIGTERM
    assert "the launcher (pid" in (workdir / "log/k.1.log").read_text()


def test_a_second_launcher_refuses_a_task_that_is_running(workdir):
    """The same stage started twice (two trainings into one exp dir): the second refuses, the first is untouched."""
    args = ["log/train.log", *task("r1.json", "-", "30")]
    first = subprocess.Popen([sys.executable, str(LAUNCHER), *args], cwd=workdir, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "# Started at" not in ((workdir / "log/train.log").read_text() if (workdir / "log/train.log").exists()
                                     else ""):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = (workdir / "log/train.log").read_text()
        second = launch(workdir, *args)
        assert second.returncode == 1
        assert "the log log/train.log is in use: another launcher is running this task right now" in second.stderr
        assert "Traceback" not in second.stderr
        assert (workdir / "log/train.log").read_text() == before
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=20)


def in_private_mount(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run bash `script` where it may mount a tmpfs (a user and mount namespace: no root needed, nothing leaks)."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("needs 'unshare -rm' (user namespaces) to make a read-only or full file system without root")
    return subprocess.run(["unshare", "-rm", "bash", "-c", f"set -u\n{script}"], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PY": sys.executable, "LAUNCHER": str(LAUNCHER)})


OLD_LOG = "# python train.py\\n# Started at then\\n#\\nOSError: what the trainer said\\n# Ended (code 1) at then\\n"


def test_a_read_only_exp_dir_is_named_and_the_old_log_kept(workdir):
    result = in_private_mount(f"""
mkdir -p exp && mount -t tmpfs -o size=1m tmpfs exp && mkdir exp/log && printf '{OLD_LOG}' > exp/log/train.log
mount -o remount,ro exp
"$PY" "$LAUNCHER" exp/log/train.log "$PY" -c pass; echo "rc=$?"
echo ---; cat exp/log/train.log
""", workdir)
    out, log = result.stdout.split("---\n")
    assert "rc=1" in out, result.stderr
    assert "cannot write the log exp/log/train.log: exp/log is on a read-only file system" in result.stderr
    assert "Traceback" not in result.stderr
    assert "OSError: what the trainer said" in log


def test_a_full_exp_dir_is_named_before_the_old_log_is_touched(workdir):
    result = in_private_mount(f"""
mkdir -p exp && mount -t tmpfs -o size=64k tmpfs exp && mkdir exp/log && printf '{OLD_LOG}' > exp/log/train.log
head -c 1000000 /dev/zero > exp/filler 2>/dev/null
"$PY" "$LAUNCHER" exp/log/train.log "$PY" -c pass; echo "rc=$?"
echo ---; cat exp/log/train.log
""", workdir)
    out, log = result.stdout.split("---\n")
    assert "rc=1" in out, result.stderr
    assert "cannot write the log exp/log/train.log: the file system of exp/log is full" in result.stderr
    assert "Traceback" not in result.stderr
    assert "OSError: what the trainer said" in log


def test_a_disk_that_fills_up_during_the_task_is_named_and_the_task_error_kept(workdir):
    filler = ("import sys\ntry:\n    open('exp/big', 'wb').write(b'x' * 10**7)\nexcept OSError as error:\n"
              "    print('the trainer says:', error, file=sys.stderr)\n    sys.exit(1)\n")
    (workdir / "fill.py").write_text(filler)
    result = in_private_mount("""
mkdir -p exp && mount -t tmpfs -o size=256k tmpfs exp
"$PY" "$LAUNCHER" exp/log/train.log "$PY" fill.py; echo "rc=$?"
echo ---; cat exp/log/train.log
""", workdir)
    out, log = result.stdout.split("---\n")
    assert "rc=1" in out, result.stderr
    assert "the trainer says: [Errno 28] No space left on device" in log
    assert "note: the file system of exp/log is full or nearly" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_task_killed_by_the_oom_killer_is_explained(workdir):
    # A task that kills itself with SIGKILL ends as the kernel's out-of-memory killer ends one: code 137, no error.
    (workdir / "oom.py").write_text("import os, signal\nprint('allocating')\nos.kill(os.getpid(), signal.SIGKILL)\n")
    result = launch(workdir, "JOB=1:2", "log/oom.JOB.log", sys.executable, "oom.py")
    assert result.returncode == 1
    assert "JOB=1: exit code 137" in result.stderr
    assert "exit code 137: killed by SIGKILL, most often by the kernel's out-of-memory killer" in result.stderr
    assert "--inference_batch_size" in result.stderr and result.stderr.count("out-of-memory") == 1
