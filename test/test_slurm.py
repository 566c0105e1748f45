"""utils/slurm.py: config-file rules (no Slurm needed) and job arrays on a real single-node Slurm (peer).

The `slurm` fixture skips (saying why) when Slurm is not installed (tools/install.sh --slurm) or the tests do not run
as root; otherwise it starts munged (unless one answers already), slurmctld and slurmd in the foreground with a
private slurm.conf under a tmp folder, and stops every daemon it started, by PID, at the end of the session.
"""
from __future__ import annotations

import dataclasses
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

from conftest import INSTALL_HINTS, require_program
from speechllm.launch.common import LaunchError, logged_exit_code, quote_command_line
from speechllm.launch.slurm import parse_config, sbatch_flags

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "utils" / "slurm.py"
RECIPE_CONF = REPO / "egs2" / "TEMPLATE" / "speechllm1" / "conf" / "slurm.conf"
FAST_POLL = ["--poll_interval", "0.5"]

# A task that records its argv and environment, fails while FIX is missing when its argv says so.
TASK_SCRIPT = """\
import json, os, sys, time
out, fail_unless, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(seconds)
with open(out, "w") as f:
    json.dump({"argv": sys.argv[4:], "pid": os.getpid(), "omp": os.environ.get("OMP_NUM_THREADS"),
               "array_task": os.environ.get("SLURM_ARRAY_TASK_ID")}, f)
if fail_unless != "-" and not os.path.exists(fail_unless):
    print("task failed on purpose: missing " + fail_unless)
    sys.exit(3)
"""


# ---------------------------------------------------------------------------------------------- config rules


def test_config_maps_options_exact_rule_before_wildcard_and_defaults():
    config = parse_config(RECIPE_CONF.read_text(), str(RECIPE_CONF))
    assert config.command[0] == "sbatch"
    # Options with a config default come first, then the others in command-line order.
    assert sbatch_flags(config, {"mem": "4G", "gpu": "2", "num_threads": "1"}) == [
        "-p", "gpu", "--gres=gpu:2", "-c", "2", "--mem", "4G"
    ]
    # gpu=0 comes from "default gpu=0" and its exact rule adds nothing; mem=0 too.
    assert sbatch_flags(config, {"mem": "0"}) == []
    # The launcher's own options never reach sbatch.
    assert sbatch_flags(config, {"max_jobs_run": "2", "rerun_all": "true", "config": "x"}) == []


def test_config_option_without_rule_names_option_file_and_fix():
    config = parse_config("command sbatch\noption mem=* --mem $0\n", "conf/slurm.conf")
    with pytest.raises(LaunchError) as error:
        sbatch_flags(config, {"account": "speech"})
    message = str(error.value)
    assert "--account speech" in message and "conf/slurm.conf" in message and "option account=*" in message


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("command sbatch\nmem=* --mem $0\n", 2, "cannot read 'mem=* --mem $0'"),
        ("command sbatch\n# comment\noption gpu --gres=gpu:$0\n", 3, "option NAME=VALUE"),
        ("command sbatch\ndefault gpu=0 -p cpu\n", 2, "default gpu=VALUE"),
        ("command sbatch --comment 'open\n", 1, "No closing quotation"),
    ],
)
def test_config_errors_name_file_and_line(text, line, words):
    with pytest.raises(LaunchError) as error:
        parse_config(text, "my.conf")
    assert f"my.conf:{line}:" in str(error.value) and words in str(error.value)


def test_config_without_command_line_is_an_error():
    with pytest.raises(LaunchError, match="my.conf: no 'command' line"):
        parse_config("option mem=* --mem $0\n", "my.conf")


# ---------------------------------------------------------------------------------------------- real Slurm

DAEMON_CONF = """\
ClusterName=speechllmtest
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
MpiDefault=none
KillWait=2
MessageTimeout=3
NodeName=localhost CPUs=2 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES State=UP
"""


@dataclasses.dataclass
class SlurmCluster:
    root: Path
    conf: Path
    env: dict[str, str]
    daemons: dict[str, subprocess.Popen]

    def start(self, name: str, argv: list[str], **popen) -> None:
        log = open(self.root / f"{name}.stdout", "ab")
        self.daemons[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, **popen)

    def start_controller(self) -> None:
        self.start("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)])

    def stop(self, name: str) -> None:
        process = self.daemons.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def squeue(self) -> str:
        return subprocess.run(["squeue", "--noheader"], env=self.env, capture_output=True, text=True).stdout

    def controller_answers(self) -> bool:
        return subprocess.run(["squeue"], env=self.env, capture_output=True).returncode == 0

    def wait_until_queue_empty(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.squeue().strip() and time.monotonic() < deadline:
            time.sleep(0.3)
        return not self.squeue().strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _require_slurm() -> None:
    """Skip, with the reason, unless this machine can run a private single-node Slurm (tests install nothing)."""
    for program in ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munged", "munge"):
        require_program(program, "/usr/sbin", hint=INSTALL_HINTS["slurm"])
    if os.geteuid() != 0:
        pytest.skip("a private Slurm for the tests runs its daemons as root (munged as user munge): run these "
                    "tests as root, as .ci/run does")


def _munge_answers() -> bool:
    return shutil.which("munge") is not None and subprocess.run(["munge", "-n"], capture_output=True).returncode == 0


def _start_munged(cluster: SlurmCluster) -> None:
    if _munge_answers():
        return
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    cluster.start("munged", ["/usr/sbin/munged", "--foreground"], user="munge", group="munge", extra_groups=[])
    _wait_for(_munge_answers, 10, cluster, "munged does not answer (munge -n)")


def _wait_for(ready, seconds: float, cluster: SlurmCluster, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            logs = "".join(
                f"\n--- {p.name}: " + p.read_text(errors="replace")[-800:] for p in sorted(cluster.root.glob("*.log*"))
            )
            _teardown(cluster)
            pytest.skip(f"Slurm did not start: {what}{logs}")
        time.sleep(0.2)


def _node_idle(cluster: SlurmCluster) -> bool:
    result = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=cluster.env, capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() == "idle"


def _teardown(cluster: SlurmCluster) -> None:
    if "slurmctld" in cluster.daemons:
        subprocess.run(["scancel", "--user", "root"], env=cluster.env, capture_output=True)
        cluster.wait_until_queue_empty(15)
    for name in ("slurmd", "slurmctld", "munged"):
        cluster.stop(name)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    _require_slurm()
    root = tmp_path_factory.mktemp("slurm")
    (root / "state").mkdir()
    (root / "spool").mkdir()
    conf = root / "slurm.conf"
    conf.write_text(DAEMON_CONF.format(root=root, ctld_port=_free_port(), slurmd_port=_free_port()))
    cluster = SlurmCluster(root=root, conf=conf, env={**os.environ, "SLURM_CONF": str(conf)}, daemons={})
    try:
        _start_munged(cluster)
        cluster.start_controller()
        cluster.start("slurmd", ["slurmd", "-D", "-f", str(conf), "-N", "localhost"])
        _wait_for(lambda: _node_idle(cluster), 30, cluster, "the node never showed as idle in sinfo")
        yield cluster
    finally:
        _teardown(cluster)


@pytest.fixture
def workdir(tmp_path, slurm):
    (tmp_path / "task.py").write_text(TASK_SCRIPT)
    return tmp_path


def run_launcher(cluster: SlurmCluster, cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(LAUNCHER), "--config", str(RECIPE_CONF), *FAST_POLL, *args],
        cwd=cwd, env=cluster.env, capture_output=True, text=True, timeout=timeout,
    )


def start_launcher(cluster: SlurmCluster, cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(LAUNCHER), "--config", str(RECIPE_CONF), *FAST_POLL, *args],
        cwd=cwd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_file_text(path: Path, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{path} never showed {text!r}"
        time.sleep(0.1)


def task_command(*args: str) -> list[str]:
    return [sys.executable, "task.py", *args]


@pytest.mark.peer
def test_job_array_reports_failed_task_and_reruns_only_it(slurm, workdir):
    started = time.monotonic()
    for index in (1, 2, 4):
        (workdir / f"fixed.{index}").touch()  # task 3 fails until fixed.3 exists
    tricky = ["two words", "$(touch PWNED)", "; touch PWNED", "`touch PWNED`", "it's", "a|b>c"]
    args = ["--mem", "200M", "--time", "0:05:00", "--num_threads", "1", "--max_jobs_run", "2",
            "JOB=1:4", "exp/log/task.JOB.log", *task_command("out.JOB.json", "fixed.JOB", "0", "part-JOB", *tricky)]
    logs = {index: workdir / f"exp/log/task.{index}.log" for index in range(1, 5)}

    first = run_launcher(slurm, workdir, *args)
    assert first.returncode == 1, first.stderr
    assert "1 of 4 task(s) failed" in first.stderr
    assert "JOB=3: exit code 3, log: exp/log/task.3.log" in first.stderr
    assert "task failed on purpose: missing fixed.3" in first.stderr  # the failed log's tail is shown
    assert {index: logged_exit_code(log) for index, log in logs.items()} == {1: 0, 2: 0, 3: 3, 4: 0}
    for index in range(1, 5):
        record = json.loads((workdir / f"out.{index}.json").read_text())
        assert record["argv"] == [f"part-{index}", *tricky]
        assert record["array_task"] == str(index) and record["omp"] == "1"
    assert not list(workdir.glob("PWNED*"))
    lines = logs[3].read_text().splitlines()
    assert lines[0] == "# " + quote_command_line(command_for(3, tricky))
    assert lines[1].startswith("# Running on ") and lines[2].startswith("# Started at ")
    assert lines[-2] == "# Accounting: time=0 threads=1" and lines[-1].startswith("# Ended (code 3) at ")

    succeeded = {index: logs[index].read_text() for index in (1, 2, 4)}
    (workdir / "fixed.3").touch()
    second = run_launcher(slurm, workdir, *args)
    assert second.returncode == 0, second.stderr
    assert "skipping 3 of 4 tasks (JOB=1-2,4)" in second.stderr
    assert logged_exit_code(logs[3]) == 0
    assert {index: logs[index].read_text() for index in (1, 2, 4)} == succeeded
    print(f"slurm job array test: {time.monotonic() - started:.1f} s wall time")


def command_for(index: int, tricky: list[str]) -> list[str]:
    return task_command(f"out.{index}.json", f"fixed.{index}", "0", f"part-{index}", *tricky)


@pytest.mark.peer
def test_sigterm_to_launcher_scancels_the_job(slurm, workdir):
    log = workdir / "exp/log/sleep.log"
    launcher = start_launcher(slurm, workdir, str(log.relative_to(workdir)), *task_command("out.json", "-", "60"))
    wait_for_file_text(log, "# Running on", 30)
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=30)
    assert launcher.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM" in stderr and "cancelled" in stderr
    assert slurm.wait_until_queue_empty(20), slurm.squeue()
    wait_for_file_text(log, "# Ended (code", 10)
    assert logged_exit_code(log) == 128 + signal.SIGTERM  # run_one passed scancel's SIGTERM on and logged it
    assert not (workdir / "out.json").exists()


@pytest.mark.peer
def test_sigkill_of_the_launcher_still_cancels_the_job(slurm, workdir):
    """kill -9 cannot be caught: the launcher's guard process scancels the job so that nothing keeps writing."""
    log = workdir / "exp/log/sleep.log"
    launcher = start_launcher(slurm, workdir, str(log.relative_to(workdir)), *task_command("out.json", "-", "60"))
    wait_for_file_text(log, "# Running on", 30)
    launcher.kill()
    launcher.communicate(timeout=30)
    assert slurm.wait_until_queue_empty(30), slurm.squeue()
    wait_for_file_text(log, "# Ended (code", 15)
    assert not (workdir / "out.json").exists()


@pytest.mark.peer
def test_dead_controller_gives_clear_error_instead_of_hanging(slurm, workdir):
    log = workdir / "exp/log/long.1.log"
    launcher = start_launcher(slurm, workdir, "--controller_timeout", "2", "JOB=1:1", "exp/log/long.JOB.log",
                              *task_command("out.JOB.json", "-", "60"))
    wait_for_file_text(log, "# Running on", 30)
    slurm.stop("slurmctld")
    try:
        _, stderr = launcher.communicate(timeout=60)
    finally:
        slurm.start_controller()
        _wait_for(slurm.controller_answers, 30, slurm, "slurmctld did not come back")
    assert launcher.returncode == 1
    assert "Slurm controller seems down" in stderr and "squeue -j " in stderr
    subprocess.run(["scancel", "--user", "root"], env=slurm.env, check=True)
    assert slurm.wait_until_queue_empty(20), slurm.squeue()


@pytest.mark.peer
def test_sbatch_refusal_names_config_and_command(slurm, workdir):
    conf = workdir / "bad.conf"
    conf.write_text("command sbatch --export=ALL\noption mem=* --no-such-flag $0\n")
    result = subprocess.run(
        [sys.executable, str(LAUNCHER), "--config", str(conf), "--mem", "1G", "x.log", "true"],
        cwd=workdir, env=slurm.env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "sbatch refused the job" in result.stderr and "--no-such-flag 1G" in result.stderr
    assert str(conf) in result.stderr


# What ESPnet's trainer reads when started with --dist_launcher slurm (espnet2/train/distributed_utils.py).
ESPNET_SLURM_PROBE = """\
import json, os
from espnet2.train.distributed_utils import get_master_addr, get_node_rank, get_num_nodes, is_in_slurm_step
print(json.dumps({"in_step": is_in_slurm_step(), "num_nodes": get_num_nodes(None, "slurm"),
                  "node_rank": get_node_rank(None, "slurm"), "master": get_master_addr(None, "slurm"),
                  "omp": os.environ.get("OMP_NUM_THREADS")}))
"""


@pytest.mark.peer
def test_srun_inside_the_job_gives_espnet_its_slurm_step(slurm, workdir):
    pytest.importorskip("espnet2.train.distributed_utils")
    log = workdir / "exp/train/train.log"
    result = run_launcher(slurm, workdir, "--num_nodes", "1", "--num_threads", "2", "exp/train/train.log",
                          "srun", "--export=ALL", sys.executable, "-c", ESPNET_SLURM_PROBE)
    assert result.returncode == 0, result.stderr + log.read_text()
    probe = json.loads([line for line in log.read_text().splitlines() if line.startswith("{")][0])
    assert probe == {"in_step": True, "num_nodes": 1, "node_rank": 0, "master": "localhost", "omp": "2"}
