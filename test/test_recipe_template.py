"""The recipe template: utils/parse_options.sh, speechllm.sh's stages, setup.sh, path.sh and the demo run.sh.

Stages run for real in a temporary recipe whose tools (utils/*.sh, python3, the job launcher) are small stubs
that record their command lines and write the files the next stage reads; no model is trained here.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_shellcheck

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "egs2" / "TEMPLATE" / "speechllm1"
DEMO = REPO / "egs2" / "synth_an4" / "speechllm1"

OWNED_SHELL_FILES = [
    "utils/parse_options.sh",
    "egs2/TEMPLATE/speechllm1/speechllm.sh",
    "egs2/TEMPLATE/speechllm1/setup.sh",
    "egs2/TEMPLATE/speechllm1/path.sh",
    "egs2/TEMPLATE/speechllm1/db.sh",
    "egs2/TEMPLATE/speechllm1/run.sh",
    "egs2/TEMPLATE/speechllm1/local/data.sh",
    "egs2/synth_an4/speechllm1/run.sh",
    "egs2/synth_an4/speechllm1/local/combination.sh",
    "egs2/synth_an4/speechllm1/local/nonspeech.sh",
    "egs2/synth_an4/speechllm1/local/ablation.sh",
    "utils/add_nonspeech.sh",
    "egs2/synth_english/speechllm1/run.sh",
    "egs2/synth_english/speechllm1/local/data.sh",
    "egs2/synth_english/speechllm1/local/whisper_reference.sh",
    "utils/dump_frontend.sh",
    "egs2/synth_av/speechllm1/run.sh",
    "egs2/synth_av/speechllm1/local/data.sh",
    "egs2/TEMPLATE/speechllm1/av.sh",
    "egs2/lrs3/speechllm1/run_av.sh",
]

OPTION_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*?)(?:\s+#\s*(.*))?$")


def run(cmd, cwd, env=None, check=True):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def declared_options(script: Path) -> dict[str, str]:
    """name -> default, read from the script's `# BEGIN OPTIONS` block without the shell."""
    lines = script.read_text().splitlines()
    block = lines[lines.index("# BEGIN OPTIONS") + 1 : lines.index("# END OPTIONS")]
    options = {}
    for line in block:
        match = OPTION_LINE.match(line)
        if match:
            options[match.group(1)] = match.group(2).strip().strip('"')
    return options


# ------------------------------------------------------------------------------------ utils/parse_options.sh


@pytest.fixture
def tiny_scripts(tmp_path):
    """A script with an option block and a Kaldi-style one without, both sourcing the real parse_options.sh."""
    (tmp_path / "utils").mkdir()
    shutil.copy(REPO / "utils" / "parse_options.sh", tmp_path / "utils")
    (tmp_path / "marked.sh").write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        "# BEGIN OPTIONS\n# General\n"
        "nj=4            # Number of jobs.\n"
        "name=x          # An option called like a variable of the parser.\n"
        "use_gpu=false   # A boolean.\n"
        'factors=""      # Speed factors, e.g. "0.9 1.1".\n'
        "# END OPTIONS\n"
        'help_message="Usage: $0 [options] <dir>"\n'
        ". utils/parse_options.sh\n"
        'printf "%s|" "$nj" "$name" "$use_gpu" "$factors" "$#" "$@"\n'
    )
    (tmp_path / "kaldi.sh").write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\ncmd=run.pl\nnj=4 # jobs\n"
        'help_message="Usage: kaldi.sh <dir>"\n. utils/parse_options.sh\nprintf "%s|" "$cmd" "$nj" "$@"\n'
    )
    return tmp_path


def test_options_both_forms_dashes_and_positional_arguments(tiny_scripts):
    out = run(["bash", "marked.sh", "--nj=3", "--name", "y z", "--use-gpu", "true", "--factors=0.9 1.1", "a", "--b"],
              tiny_scripts).stdout
    assert out == "3|y z|true|0.9 1.1|2|a|--b|"
    # `--` ends the options; a value may itself contain "=".
    out = run(["bash", "marked.sh", "--name=k=v", "--", "--nj", "5"], tiny_scripts).stdout
    assert out == "4|k=v|false||2|--nj|5|"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bogus", "1"], "unknown option --bogus; run 'marked.sh --help'"),
        (["--bogus=1"], "unknown option --bogus;"),
        (["--use_gpu", "1"], "option --use_gpu takes true or false, got '1'"),
        (["--nj"], "option --nj needs a value"),
        (["--help_message", "x"], "unknown option --help_message"),
    ],
)
def test_bad_options_are_rejected_with_the_option_named(tiny_scripts, args, message):
    proc = run(["bash", "marked.sh", *args], tiny_scripts, check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert message in proc.stderr


def test_help_is_generated_from_the_block_and_shows_given_values(tiny_scripts):
    out = run(["bash", "marked.sh", "--nj", "8", "--help"], tiny_scripts).stdout
    assert out.startswith("Usage: marked.sh [options] <dir>\n")
    assert "  # General\n" in out
    assert re.search(r'--nj +Number of jobs\. \(default="4"\) \(given: "8"\)', out)
    assert re.search(r'--factors +Speed factors, e\.g\. "0\.9 1\.1"\. \(default=""\)$', out, re.M)


def test_kaldi_style_script_without_block(tiny_scripts):
    assert run(["bash", "kaldi.sh", "--cmd", "queue.pl -q x", "--nj", "2", "d"], tiny_scripts).stdout \
        == "queue.pl -q x|2|d|"
    help_text = run(["bash", "kaldi.sh", "--help"], tiny_scripts).stdout
    assert help_text.startswith("Usage: kaldi.sh <dir>")
    assert re.search(r'--nj +jobs \(default="4"\)', help_text) and '--cmd' in help_text
    proc = run(["bash", "kaldi.sh", "--undefined", "1"], tiny_scripts, check=False)
    assert proc.returncode != 0 and "unknown option --undefined" in proc.stderr


# ------------------------------------------------------------------------------------ speechllm.sh --help


def test_help_lists_every_option_with_its_default_and_every_stage():
    declared = declared_options(TEMPLATE / "speechllm.sh")
    assert {"stage", "stop_stage", "skip_stages", "dry_run", "nj", "inference_nj", "ngpu"} <= set(declared)
    out = run(["./speechllm.sh", "--help"], TEMPLATE).stdout
    shown = dict(re.findall(r'^  --(\w+) .*\(default="(.*?)"\)', out, re.M))
    assert shown == declared
    assert declared["nj"] == "4" and declared["inference_model"] == "valid.loss.ave.pth"
    for number, title in enumerate(["Data preparation", "Speed perturbation", "Audio dumping", "Length filtering",
                                    "Token models", "Frozen frontend", "statistics", "Training", "Decoding", "Scoring",
                                    "Packing"], 1):
        assert re.search(rf"^ +{number}\. .*{title}", out, re.M), title


def test_demo_help_shows_the_recipe_values():
    out = run(["./run.sh", "--help"], DEMO).stdout
    assert re.search(r'--inference_model .*\(default="valid.loss.ave.pth"\) \(given: "valid.acc.ave.pth"\)', out)
    assert re.search(r'--test_sets .*\(given: "dev test"\)', out)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--no_such_option", "1"], "unknown option --no_such_option; run './speechllm.sh --help'"),
        (["--nj", "two"], "--nj takes a whole number, got 'two'"),
        (["--skip_stages", "5,7"], "--skip_stages takes stage numbers"),
        (["--stage", "9", "--decode_config", ""], "stage 9 needs --decode_config"),
        (["positional"], "unexpected argument 'positional'"),
        (["--task", "aed"], "--task takes speechllm, asr or lm, got 'aed'"),
        (["--task", "lm", "--dump_frontend", "true"], "--task lm reads transcripts only"),
        (["--task", "asr", "--dump_frontend", "true"], "--task asr trains its frontend with the model"),
        (["--task", "asr", "--ctc_bpe_vocab_size", "50"], "drop --ctc_bpe_vocab_size"),
        (["--task", "asr", "--feats_normalize", "none"], "--feats_normalize takes global_mvn or utterance_mvn"),
        (["--llm_token_type", "words"], "--llm_token_type takes llm or bpe, got 'words'"),
        (["--llm_token_type", "bpe", "--am_bpe_vocab_size", "0"], "--llm_token_type bpe needs --am_bpe_vocab_size > 0"),
    ],
)
def test_speechllm_rejects_bad_options_before_any_stage(stub_recipe, args, message):
    proc = stub_recipe.run(*args, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Stage" not in proc.stdout and not stub_recipe.calls()


# ------------------------------------------------------------------------------------ stages, with stub tools

STUB_TOOL = r'''#!{python}
"""Stub of {name}: records its command line; writes what the next stage reads."""
import json, os, shutil, sys
from pathlib import Path

name = "{name}"
args = sys.argv[1:]
with open(os.environ["STUB_CALLS"], "a") as f:
    f.write(json.dumps([name] + args) + "\n")


def opt(flag):
    return args[args.index(flag) + 1]


def copy_dir(src, dst, prefix=""):
    Path(dst).mkdir(parents=True, exist_ok=True)
    for file in ("wav.scp", "text", "utt2spk"):
        lines = Path(src, file).read_text().splitlines()
        Path(dst, file).write_text("".join(prefix + line + "\n" for line in lines))


if name in ("dump_audio.sh", "filter_data_dir.sh", "perturb_data_dir_speed.sh"):
    copy_dir(args[-2], args[-1], "sp-" if name == "perturb_data_dir_speed.sh" else "")
elif name == "dump_frontend.sh" and "--verify" not in args:
    Path(args[-1]).mkdir(parents=True, exist_ok=True)
    keys = [line.split()[0] for line in Path(args[-2], "wav.scp").read_text().splitlines()]
    Path(args[-1], "feats.scp").write_text("".join(f"{{k}} {{args[-1]}}/feats.ark:{{i}}\n" for i, k in enumerate(keys)))
elif name == "local_data.sh":
    for part, count in (("train", 4), ("dev", 2), ("test", 5)):
        Path("data", part).mkdir(parents=True, exist_ok=True)
        keys = [f"spk{{i % 2}}-{{part}}{{i}}" for i in range(count)]
        Path("data", part, "wav.scp").write_text("".join(f"{{k}} /a/{{k}}.wav\n" for k in keys))
        Path("data", part, "text").write_text("".join(f"{{k}} words of {{k}}\n" for k in keys))
        Path("data", part, "utt2spk").write_text("".join(f"{{k}} {{k[:4]}}\n" for k in keys))
elif name == "launcher":
    # utils/local.py's interface: [--opt value ...] [JOB=1:N] LOG COMMAND...; runs the tasks one by one.
    while args[0].startswith("--"):
        args = args[2:]
    first = last = 1
    var = None
    if "=" in args[0] and ":" in args[0]:
        var, rng = args[0].split("=")
        first, last = map(int, rng.split(":"))
        args = args[1:]
    code = 0
    for job in range(first, last + 1):
        sub = [a.replace(var, str(job)) if var else a for a in args]
        Path(sub[0]).parent.mkdir(parents=True, exist_ok=True)
        with open(sub[0], "w") as log:
            code = code or __import__("subprocess").call(sub[1:], stdout=log, stderr=log)
    sys.exit(code)
elif name == "python3" and args[:2] == ["-m", "speechllm.bin.speechllm_inference"]:
    out = Path(opt("--output_dir"))
    keys = [line.split()[0] for line in open(opt("--key_file"))]
    keys = [k for k in keys if k not in os.environ.get("STUB_DROP_KEYS", "").split()]
    for nbest in ("1best_recog", "2best_recog"):
        (out / nbest).mkdir(parents=True)
        for file in ("text", "score", "token"):  # reversed: the merge must sort
            (out / nbest / file).write_text("".join(f"{{k}} {{file}} {{nbest}} {{k}}\n" for k in reversed(keys)))
elif name == "python3" and args[:2] == ["-m", "speechllm.bin.speechllm_train"]:
    if "true" == dict(zip(args, args[1:])).get("--collect_stats"):
        for part, flag in (("train", "--train_shape_file"), ("valid", "--valid_shape_file")):
            Path(opt("--output_dir"), part).mkdir(parents=True, exist_ok=True)
            shutil.copy(opt(flag), Path(opt("--output_dir"), part, "speech_shape"))
    elif os.environ.get("STUB_FAIL_TRAIN"):
        print("training blew up", file=sys.stderr)
        sys.exit(1)
elif name == "python3" and args[:2] == ["-m", "espnet2.bin.aggregate_stats_dirs"]:
    for part in ("train", "valid"):
        Path(opt("--output_dir"), part).mkdir(parents=True, exist_ok=True)
        for shape in ("speech_shape", "text_shape"):
            Path(opt("--output_dir"), part, shape).write_text("")
elif name == "python3" and args[:2] == ["-m", "speechllm.bin.rescore_nbest"]:
    pairs = zip([args[i + 1] for i, a in enumerate(args) if a == "--nbest_dir"],
                [args[i + 1] for i, a in enumerate(args) if a == "--output_dir"])
    for nbest_dir, output_dir in pairs:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(nbest_dir, "text"), Path(output_dir, "text"))
elif name == "python3" and args[:2] == ["-m", "speechllm.bin.make_results"]:
    Path(args[2], "RESULTS.md").write_text("# RESULTS stub table\n")
'''


class StubRecipe:
    """A recipe dir with the real speechllm.sh and parse_options.sh, and stubs for everything they call."""

    def __init__(self, root: Path):
        self.root = root
        self.calls_file = root / "calls.jsonl"
        self.env = {**os.environ, "STUB_CALLS": str(self.calls_file)}
        (root / "utils").mkdir(parents=True)
        (root / "local").mkdir()
        (root / "bin").mkdir()
        (root / "conf").mkdir()
        (root / "speechllm.sh").symlink_to(TEMPLATE / "speechllm.sh")
        shutil.copy(REPO / "utils" / "parse_options.sh", root / "utils")
        for tool in ("dump_audio.sh", "validate_data_dir.sh", "filter_data_dir.sh", "perturb_data_dir_speed.sh",
                     "dump_frontend.sh"):
            self._stub(root / "utils" / tool, tool)
        self._stub(root / "local" / "data.sh", "local_data.sh")
        self._stub(root / "bin" / "python3", "python3")
        self._stub(root / "bin" / "launcher", "launcher")
        (root / "path.sh").write_text(f'export PATH="{root}/bin:$PATH"\n')
        (root / "cmd.sh").write_text('train_cmd="launcher"\ndecode_cmd="launcher --mem 2G"\ndata_cmd="launcher"\n'
                                     'cuda_cmd="launcher --mem 6G"\n')
        for conf in ("train.yaml", "decode.yaml", "toy_llm.yaml"):
            (root / "conf" / conf).write_text("{}\n")

    def _stub(self, path: Path, name: str):
        path.write_text(STUB_TOOL.format(python=sys.executable, name=name))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def run(self, *args, check=True, env=None):
        base = ["--train_set", "train", "--valid_set", "dev", "--test_sets", "dev test",
                "--train_config", "conf/train.yaml", "--decode_config", "conf/decode.yaml", "--nj", "2",
                "--inference_nj", "2"]
        return run(["./speechllm.sh", *base, *args], self.root, env={**self.env, **(env or {})}, check=check)

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def tools_called(self) -> list[str]:
        """Each call as its tool name, or `python3 -m module` as the module."""
        return [c[2] if c[0] == "python3" else c[0] for c in self.calls()]


@pytest.fixture
def stub_recipe(tmp_path):
    return StubRecipe(tmp_path / "recipe")


def stage_events(stdout: str) -> list[str]:
    return re.findall(r"Stage (\d+): .*: (started|finished in \d+ s|skipped)", stdout)


def test_stage_selection_runs_only_the_selected_stage_functions(stub_recipe):
    stub_recipe.run("--stop_stage", "1")
    stub_recipe.calls_file.unlink()
    out = stub_recipe.run("--stage", "3", "--stop_stage", "4", "--skip_stages", "4").stdout
    events = stage_events(out)
    assert [(n, e.split()[0]) for n, e in events] == [("3", "started"), ("3", "finished"), ("4", "skipped")]
    assert re.search(r"^\S+ \(speechllm\.sh:\d+:run_stage\) Stage 3: Audio dumping and validation: finished in \d+ s",
                     out, re.M)
    # dev is both the validation set and a test set: dumped once, into org/ for the length filter.
    assert stub_recipe.calls() == [
        ["dump_audio.sh", "--nj", "2", "--cmd", "launcher", "--fs", "16000", "--audio_format", "flac",
         "--resample", "false", "--channel", "-1", "data/train", "dump/org/train"],
        ["validate_data_dir.sh", "dump/org/train"],
        ["dump_audio.sh", "--nj", "2", "--cmd", "launcher", "--fs", "16000", "--audio_format", "flac",
         "--resample", "false", "--channel", "-1", "data/dev", "dump/org/dev"],
        ["validate_data_dir.sh", "dump/org/dev"],
        ["dump_audio.sh", "--nj", "2", "--cmd", "launcher", "--fs", "16000", "--audio_format", "flac",
         "--resample", "false", "--channel", "-1", "data/test", "dump/test"],
        ["validate_data_dir.sh", "dump/test"],
    ]


def test_dry_run_prints_the_commands_of_the_selected_stages_only(stub_recipe):
    out = stub_recipe.run("--dry_run", "true", "--stage", "3", "--stop_stage", "5", "--skip_stages", "4").stdout
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert commands[0] == "+ utils/dump_audio.sh --nj 2 --cmd launcher --fs 16000 --audio_format flac " \
                          "--resample false --channel -1 data/train dump/org/train"
    assert not any("filter_data_dir" in c for c in commands)
    assert commands[-1] == "+ python3 -m speechllm.bin.prepare_tokens --text dump/train/text " \
                           "--output_dir data/token_list"
    assert not stub_recipe.calls() and not (stub_recipe.root / "dump").exists()


def test_stages_1_to_5_with_speed_perturbation(stub_recipe):
    out = stub_recipe.run("--stop_stage", "5", "--speed_perturb_factors", "0.9 1.1",
                          "--toy_llm_config", "conf/toy_llm.yaml", "--ctc_bpe_vocab_size", "30").stdout
    assert [n for n, e in stage_events(out) if e == "started"] == ["1", "2", "3", "4", "5"]
    assert stub_recipe.tools_called() == [
        "local_data.sh", "perturb_data_dir_speed.sh", "dump_audio.sh", "validate_data_dir.sh", "dump_audio.sh",
        "validate_data_dir.sh", "dump_audio.sh", "validate_data_dir.sh", "filter_data_dir.sh", "filter_data_dir.sh",
        "speechllm.bin.prepare_tokens",
    ]
    calls = stub_recipe.calls()
    assert calls[1] == ["perturb_data_dir_speed.sh", "--factors", "0.9 1.1", "data/train", "data/train_sp"]
    assert calls[2][-2:] == ["data/train_sp", "dump/org/train_sp"]
    assert calls[8] == ["filter_data_dir.sh", "--min_duration", "0.1", "--max_duration", "20", "--fs", "16000",
                        "dump/org/train_sp", "dump/train_sp"]
    assert calls[10] == ["python3", "-m", "speechllm.bin.prepare_tokens", "--text", "dump/train_sp/text",
                         "--output_dir", "data/token_list", "--ctc_bpe_vocab_size", "30",
                         "--toy_llm_config", "conf/toy_llm.yaml", "--toy_llm_dir", "exp/llm_init"]


def test_llm_over_the_corpus_bpe_gets_it_from_stage_5(stub_recipe):
    out = stub_recipe.run("--dry_run", "true", "--stage", "5", "--stop_stage", "8", "--llm_token_type", "bpe",
                          "--am_bpe_vocab_size", "50").stdout
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert any("speechllm.bin.prepare_tokens" in c and "--am_bpe_vocab_size 50" in c for c in commands)
    training = [c for c in commands if "speechllm.bin.speechllm_train" in c]
    assert len(training) == 2 and all("--token_type bpe --bpemodel data/token_list/am_bpe.model" in c
                                      for c in training)


def test_task_lm_trains_on_the_transcripts_and_exports(stub_recipe):
    out = stub_recipe.run("--dry_run", "true", "--stage", "7", "--stop_stage", "11", "--task", "lm",
                          "--llm", "/models/llm", "--llm_token_type", "bpe").stdout
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    stats = next(c for c in commands if "--collect_stats true" in c)
    assert "python3 -m speechllm.bin.lm_train" in stats and "wav.scp" not in stats
    assert "--train_data_path_and_name_and_type dump/train/text,text,text" in stats
    assert "--token_type bpe --bpemodel data/token_list/am_bpe.model" in stats
    assert any(c.startswith("+ split_scp dump/train/text 2") for c in commands)
    training = next(c for c in commands if "speechllm.bin.lm_train" in c and "--resume true" in c)
    assert "--train_shape_file exp/stats_train/train/text_shape" in training and "speech_shape" not in training
    assert "--task lm decodes nothing" in out and not any("speechllm_inference" in c for c in commands)
    assert any(c.startswith("+ python3 -m speechllm.bin.export_lm --train_config exp/train/config.yaml")
               for c in commands)


def test_a_gguf_llm_is_converted_once_in_stage_5_and_its_folder_used_after(stub_recipe):
    write_dumped_sets(stub_recipe)
    gguf = "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    proc = stub_recipe.run("--stage", "7", "--stop_stage", "7", "--llm", gguf, check=False)
    assert proc.returncode != 0
    assert ("stage 7 needs exp/llm/SmolLM2-135M-Instruct.Q4_1/config.json, which does not exist: run stage 5 first "
            f"(it converts {gguf})") in proc.stderr
    stub_recipe.run("--stage", "5", "--stop_stage", "5", "--llm", gguf)
    assert stub_recipe.calls()[-1] == ["python3", "-m", "speechllm.bin.prepare_tokens", "--text", "dump/train/text",
                                       "--output_dir", "data/token_list", "--llm", gguf, "--convert_gguf_to",
                                       "exp/llm/SmolLM2-135M-Instruct.Q4_1"]
    (stub_recipe.root / "exp/llm/SmolLM2-135M-Instruct.Q4_1").mkdir(parents=True)
    (stub_recipe.root / "exp/llm/SmolLM2-135M-Instruct.Q4_1/config.json").write_text("{}")
    stub_recipe.run("--stage", "7", "--stop_stage", "7", "--llm", gguf)
    stats = [c for c in stub_recipe.calls() if c[:3] == ["python3", "-m", "speechllm.bin.speechllm_train"]]
    assert stats and all("name_or_path=exp/llm/SmolLM2-135M-Instruct.Q4_1" in c for c in stats)


def write_dumped_sets(recipe: StubRecipe):
    recipe.run("--stop_stage", "4")
    recipe.calls_file.unlink()


def test_statistics_split_into_jobs_and_aggregated(stub_recipe):
    write_dumped_sets(stub_recipe)
    (stub_recipe.root / "data" / "token_list").mkdir(parents=True)
    (stub_recipe.root / "data" / "token_list" / "ctc_bpe.model").write_text("")
    # nj=3, but dev has 2 utterances: 2 jobs.
    stub_recipe.run("--stage", "7", "--stop_stage", "7", "--nj", "3", "--llm", "/models/lm",
                    "--ctc_bpe_vocab_size", "30", "--train_args", "--max_epoch 1")
    calls = stub_recipe.calls()
    logdir = stub_recipe.root / "exp" / "stats_train" / "logdir"
    train_keys = [(logdir / f"train.{i}.scp").read_text() for i in (1, 2)]
    assert "".join(train_keys) == (stub_recipe.root / "dump" / "train" / "wav.scp").read_text()
    assert all(train_keys) and not (logdir / "train.3.scp").exists()
    launcher, stats1, stats2, aggregate = calls
    assert launcher[:3] == ["launcher", "JOB=1:2", "exp/stats_train/logdir/stats.JOB.log"]
    assert stats1[:8] == ["python3", "-m", "speechllm.bin.speechllm_train", "--collect_stats", "true",
                          "--use_preprocessor", "true", "--config"]
    assert "--llm_conf name_or_path=/models/lm --ctc_bpemodel data/token_list/ctc_bpe.model " \
           "--train_data_path_and_name_and_type dump/train/wav.scp,speech,sound" in " ".join(stats1)
    assert stats2[stats2.index("--train_shape_file") + 1] == "exp/stats_train/logdir/train.2.scp"
    assert stats2[-2:] == ["--max_epoch", "1"]
    assert aggregate[2:] == ["espnet2.bin.aggregate_stats_dirs", "--input_dir", "exp/stats_train/logdir/stats.1",
                             "--input_dir", "exp/stats_train/logdir/stats.2", "--output_dir", "exp/stats_train"]


def test_frozen_frontend_is_dumped_once_and_read_by_training_and_decoding(stub_recipe):
    write_dumped_sets(stub_recipe)
    out = stub_recipe.run("--stage", "6", "--stop_stage", "6").stdout
    assert "--dump_frontend false: the frontend runs inside training and decoding; nothing to do" in out
    assert not stub_recipe.calls()
    stub_recipe.run("--stage", "6", "--stop_stage", "8", "--dump_frontend", "true", "--frontend_batch_size", "4")
    calls = stub_recipe.calls()
    dumps = [c for c in calls if c[0] == "dump_frontend.sh" and "--verify" not in c]
    assert [c[-2:] for c in dumps] == [["dump/train", "dump/frontend/train"], ["dump/dev", "dump/frontend/dev"],
                                       ["dump/test", "dump/frontend/test"]]
    assert dumps[0][:9] == ["dump_frontend.sh", "--nj", "2", "--cmd", "launcher", "--batch_size", "4", "--config",
                            "conf/train.yaml"]
    # Statistics and training read the features, after checking they were made by this config's frontend.
    trainings = [c for c in calls if c[:3] == ["python3", "-m", "speechllm.bin.speechllm_train"]]
    for call in trainings:
        joined = " ".join(call)
        assert "--train_data_path_and_name_and_type dump/frontend/train/feats.scp,speech,kaldi_ark" in joined
        assert "--valid_data_path_and_name_and_type dump/frontend/dev/feats.scp,speech,kaldi_ark" in joined
    assert ["dump_frontend.sh", "--verify", "--config", "conf/train.yaml", "dump/frontend/train"] in calls
    model_dir = stub_recipe.root / "exp" / "train"
    (model_dir / "config.yaml").write_text("{}\n")
    (model_dir / "valid.loss.ave.pth").write_text("")
    stub_recipe.calls_file.unlink()
    stub_recipe.run("--stage", "9", "--stop_stage", "9", "--dump_frontend", "true")
    decodes = [c for c in stub_recipe.calls() if c[:3] == ["python3", "-m", "speechllm.bin.speechllm_inference"]]
    assert decodes and all("dump/frontend/test/feats.scp,speech,kaldi_ark" in c or
                           "dump/frontend/dev/feats.scp,speech,kaldi_ark" in c for c in decodes)


def test_training_failure_names_the_log(stub_recipe):
    write_dumped_sets(stub_recipe)
    stub_recipe.run("--stage", "7", "--stop_stage", "7")
    proc = stub_recipe.run("--stage", "8", "--stop_stage", "8", "--ngpu", "1", check=False,
                           env={"STUB_FAIL_TRAIN": "1"})
    assert proc.returncode != 0
    assert "training failed: see exp/train/train.log" in proc.stderr
    assert "stage 8 (Training) failed with exit code 1; resume with --stage 8" in proc.stderr
    assert "training blew up" in (stub_recipe.root / "exp" / "train" / "train.log").read_text()
    train = stub_recipe.calls()[-1]
    assert stub_recipe.calls()[-2][:6] == ["launcher", "--gpu", "1", "--num_threads", "2", "exp/train/train.log"]
    assert train.count("--train_shape_file") == 2 and "exp/stats_train/valid/text_shape" in train
    assert train[train.index("--ngpu") + 1] == "1" and train[train.index("--resume") + 1] == "true"


def trained_stub_model(recipe: StubRecipe) -> Path:
    """Dumped sets and a model dir as stage 8 leaves them (config.yaml, valid.loss.ave.pth), for stages 9 and 10."""
    write_dumped_sets(recipe)
    model_dir = recipe.root / "exp" / "train"
    model_dir.mkdir(parents=True)
    (model_dir / "config.yaml").write_text("{}\n")
    (model_dir / "valid.loss.ave.pth").write_text("")
    return model_dir


def test_decoding_merges_sorted_outputs_and_counts_missing_hypotheses(stub_recipe):
    model_dir = trained_stub_model(stub_recipe)
    out = stub_recipe.run("--stage", "9", "--stop_stage", "10", env={"STUB_DROP_KEYS": "spk1-test3"}).stdout
    decode_dir = model_dir / "decode_decode_valid.loss.ave" / "test"
    keys = [line.split()[0] for line in (stub_recipe.root / "dump" / "test" / "wav.scp").read_text().splitlines()]
    expected = [k for k in sorted(keys) if k != "spk1-test3"]
    assert [line.split()[0] for line in (decode_dir / "text").read_text().splitlines()] == expected
    assert (decode_dir / "score").read_text().splitlines()[0] == f"{expected[0]} score 1best_recog {expected[0]}"
    assert (decode_dir / "2best_recog" / "token").read_text().count("\n") == len(expected)
    assert (decode_dir / "missing_hyps.txt").read_text() == "spk1-test3\n"
    assert "WARNING: 1 of 5 utterances have no hypothesis" in out
    assert not (model_dir / "decode_decode_valid.loss.ave" / "dev" / "missing_hyps.txt").exists()
    inference = [c for c in stub_recipe.calls() if c[:3] == ["python3", "-m", "speechllm.bin.speechllm_inference"]]
    assert len(inference) == 4  # 2 test sets x 2 jobs
    assert inference[3][inference[3].index("--key_file") + 1] == f"{decode_dir.relative_to(stub_recipe.root)}" \
                                                                  "/logdir/keys.2.scp"
    scoring = [c for c in stub_recipe.calls() if c[:3] == ["python3", "-m", "speechllm.bin.score_text"]]
    assert [c[c.index("--out_dir") + 1].rsplit("/", 1)[1] for c in scoring] == ["score_wer", "score_cer"] * 2
    assert "# RESULTS stub table" in out


def test_gpu_decoding_and_inference_args_reach_the_jobs_and_name_the_decode_dir(stub_recipe):
    model_dir = trained_stub_model(stub_recipe)
    stub_recipe.run("--stage", "9", "--stop_stage", "9", "--test_sets", "test")
    stub_recipe.run("--stage", "9", "--stop_stage", "9", "--test_sets", "test", "--gpu_inference", "true",
                    "--inference_args", "--beam_size 8 --ctc_weight=0.3")
    launches = [c for c in stub_recipe.calls() if c[0] == "launcher" and "speechllm.bin.speechllm_inference" in c]
    assert [c[1:5] for c in launches] == [["--mem", "2G", "--gpu", "0"], ["--mem", "6G", "--gpu", "1"]]
    inference = [c for c in stub_recipe.calls() if c[:3] == ["python3", "-m", "speechllm.bin.speechllm_inference"]]
    assert [c[c.index("--ngpu") + 1] for c in inference] == ["0", "0", "1", "1"]
    assert inference[-1][-3:] == ["--beam_size", "8", "--ctc_weight=0.3"]
    assert (model_dir / "decode_decode_valid.loss.ave" / "test" / "text").is_file()
    assert (model_dir / "decode_decode_beam_size8_ctc_weight0.3_valid.loss.ave" / "test" / "text").is_file()
    proc = stub_recipe.run("--stage", "9", "--gpu_inference", "yes", check=False)
    assert proc.returncode != 0 and "--gpu_inference takes true or false, got 'yes'" in proc.stderr


AUDIO_VISUAL_CONFIG = "frontend: hf_speech_encoder\nvisual_injection_conf: {kind: gated_add}\n"


def write_lip_rois(recipe: StubRecipe, sets=("train", "dev", "test")):
    for part in sets:
        keys = [line.split()[0] for line in (recipe.root / "data" / part / "wav.scp").read_text().splitlines()]
        (recipe.root / "data" / part / "roi.scp").write_text("".join(f"{k} /roi/{k}.npy\n" for k in keys))


@pytest.mark.parametrize("config, audio_visual", [
    (AUDIO_VISUAL_CONFIG, True),
    ("visual_injection_conf:\n    kind: gated_add\nfrontend: hf_speech_encoder\n", True),  # a block, as ESPnet
    ("visual_injection_conf: null\nfrontend: hf_speech_encoder\n", False),                  # writes config.yaml
    ("{}\n", False),
])
def test_lip_rois_reach_training_and_decoding_of_an_audio_visual_model_only(stub_recipe, config, audio_visual):
    write_dumped_sets(stub_recipe)
    write_lip_rois(stub_recipe)
    (stub_recipe.root / "conf" / "train.yaml").write_text(config)
    stub_recipe.run("--stage", "7", "--stop_stage", "8")
    trainings = [" ".join(c) for c in stub_recipe.calls() if c[:3] == ["python3", "-m", "speechllm.bin.speechllm_train"]]
    assert len(trainings) == 3  # two statistics jobs and the training
    for call in trainings:
        assert ("--train_data_path_and_name_and_type dump/train/roi.scp,video,npy "
                "--valid_data_path_and_name_and_type dump/dev/wav.scp" in call) == audio_visual
        assert ("--valid_data_path_and_name_and_type dump/dev/roi.scp,video,npy" in call) == audio_visual
    model_dir = stub_recipe.root / "exp" / "train"
    (model_dir / "config.yaml").write_text(config)
    (model_dir / "valid.loss.ave.pth").write_text("")
    stub_recipe.calls_file.unlink()
    stub_recipe.run("--stage", "9", "--stop_stage", "9", "--test_sets", "test", "--inference_args", "--task vsr")
    decodes = [c for c in stub_recipe.calls() if c[:3] == ["python3", "-m", "speechllm.bin.speechllm_inference"]]
    assert decodes and all(("dump/test/roi.scp,video,npy" in c) == audio_visual for c in decodes)
    assert all(c[-2:] == ["--task", "vsr"] for c in decodes)
    assert (model_dir / "decode_decode_taskvsr_valid.loss.ave" / "test" / "text").is_file()


def test_an_audio_visual_model_without_lip_rois_is_refused_naming_the_data_dir(stub_recipe):
    write_dumped_sets(stub_recipe)
    write_lip_rois(stub_recipe, sets=("train",))
    (stub_recipe.root / "conf" / "train.yaml").write_text(AUDIO_VISUAL_CONFIG)
    proc = stub_recipe.run("--stage", "7", "--stop_stage", "7", check=False)
    assert proc.returncode != 0
    assert "conf/train.yaml configures an audio-visual model but data/dev has no roi.scp (lip ROIs)" in proc.stderr


def test_rescoring_is_tuned_on_the_validation_decode_and_scored_beside_each_decode(stub_recipe):
    trained_stub_model(stub_recipe)
    stub_recipe.run("--stage", "9", "--stop_stage", "10", "--rescore_lm", "/models/SmolLM2.gguf",
                    "--rescore_opts", "--lm_weights 0,0.5")
    rescoring = [c for c in stub_recipe.calls() if c[:3] == ["python3", "-m", "speechllm.bin.rescore_nbest"]]
    decodes = "exp/train/decode_decode_valid.loss.ave"
    assert len(rescoring) == 1  # one job: the LM loaded and the weights tuned once for every test set
    call = rescoring[0]
    pairs = [(call[i + 1], call[i + 3]) for i, a in enumerate(call) if a == "--nbest_dir"]
    assert pairs == [(f"{decodes}/{x}", f"{decodes}_rescore_SmolLM2/{x}") for x in ("dev", "test")]
    assert call[call.index("--tune_nbest_dir") + 1] == f"{decodes}/dev"  # tuned on dev's decode and references
    assert call[call.index("--tune_ref") + 1] == "dump/dev/text"
    assert call[-2:] == ["--lm_weights", "0,0.5"]  # --rescore_opts passed on
    scoring = [c for c in stub_recipe.calls() if c[:3] == ["python3", "-m", "speechllm.bin.score_text"]]
    assert [c[c.index("--out_dir") + 1] for c in scoring] == [
        f"{d}/{x}/score_{m}" for x in ("dev", "test") for d in (decodes, f"{decodes}_rescore_SmolLM2")
        for m in ("wer", "cer")]
    # Without the validation set among the decoded sets there is nothing to tune on.
    failed = stub_recipe.run("--stage", "9", "--stop_stage", "9", "--test_sets", "test", "--rescore_lm", "lm",
                             check=False)
    assert failed.returncode != 0
    assert "--rescore_lm tunes on the validation set's decode: add dev to --test_sets" in failed.stderr


# ------------------------------------------------------------------------------------ setup.sh and path.sh


def test_setup_creates_a_working_recipe_and_refuses_to_overwrite(tmp_path):
    target = tmp_path / "egs2" / "newcorpus" / "speechllm1"
    out = run([str(TEMPLATE / "setup.sh"), str(target)], tmp_path).stdout
    assert "Created" in out
    for copied in ("run.sh", "local/data.sh", "db.sh", "conf/train.yaml", "conf/decode.yaml"):
        assert (target / copied).is_file() and not (target / copied).is_symlink()
    for linked, source in (("speechllm.sh", TEMPLATE / "speechllm.sh"), ("av.sh", TEMPLATE / "av.sh"),
                           ("path.sh", TEMPLATE / "path.sh"),
                           ("cmd.sh", TEMPLATE / "cmd.sh"), ("utils", REPO / "utils")):
        assert (target / linked).is_symlink() and (target / linked).resolve() == source.resolve()
        assert not os.readlink(target / linked).startswith("/")
    # The new corpus's db.sh is its own: editing it leaves the template's alone.
    template_db = (TEMPLATE / "db.sh").read_text()
    (target / "db.sh").write_text(template_db + "MYCORPUS=/data/mycorpus\n")
    assert (TEMPLATE / "db.sh").read_text() == template_db
    assert "--train_config" in run(["./run.sh", "--help"], target).stdout
    # The real path.sh and cmd.sh load in the new recipe; its placeholder local/data.sh explains and fails.
    proc = run(["./run.sh", "--stop_stage", "1"], target, check=False)
    assert proc.returncode != 0 and "template's placeholder" in proc.stderr and "wav.scp" in proc.stderr
    (target / "run.sh").write_text("# edited\n")
    proc = run([str(TEMPLATE / "setup.sh"), str(target)], tmp_path, check=False)
    assert proc.returncode != 0 and "refusing to overwrite" in proc.stderr
    assert (target / "run.sh").read_text() == "# edited\n"


def test_template_example_configs_parse_with_every_key_known():
    """conf/train.yaml and conf/decode.yaml of the template (copied by setup.sh) are valid and commented."""
    from speechllm.bin.speechllm_inference import get_parser as inference_parser
    from speechllm.decoding.options import DecodingOptions
    from speechllm.tasks.speech_llm import DEFAULT_LLM_CONF, DEFAULT_MODEL_CONF, SpeechLLMTask, check_conf_keys

    train = TEMPLATE / "conf" / "train.yaml"
    args = SpeechLLMTask.get_parser().parse_args(["--config", str(train), "--output_dir", "x"])
    check_conf_keys("llm_conf", args.llm_conf, DEFAULT_LLM_CONF)
    check_conf_keys("model_conf", args.model_conf, DEFAULT_MODEL_CONF)
    decode = TEMPLATE / "conf" / "decode.yaml"
    options = vars(inference_parser().parse_args(["--config", str(decode), "--output_dir", "x",
                                                  "--data_path_and_name_and_type", "a,speech,sound"]))
    DecodingOptions(**{name: options[name] for name in vars(DecodingOptions())})
    import yaml

    assert set(yaml.safe_load(decode.read_text())) <= set(vars(DecodingOptions()))
    for config in (train, decode):
        assert sum(line.lstrip().startswith("#") or " # " in line for line in config.read_text().splitlines()) >= 8


def test_path_sh_sets_the_environment(tmp_path):
    script = 'set -euo pipefail; . ./path.sh; printf "%s\\n" "$MAIN_ROOT" "$PYTHONPATH" "$LC_ALL" ' \
             '"$PYTHONIOENCODING" "$OMP_NUM_THREADS" "$(command -v parse_options.sh)"'
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTHONPATH")}
    values = run(["bash", "-c", script], DEMO, env=env).stdout.split("\n")
    root, pythonpath, lc_all, encoding, threads, tool = values[:6]
    assert Path(root) == REPO and pythonpath == str(REPO)
    assert (lc_all, encoding, threads) == ("C", "UTF-8", "1")
    assert Path(tool) == REPO / "utils" / "parse_options.sh"
    assert run(["bash", "-c", script], DEMO, env={**env, "OMP_NUM_THREADS": "3"}).stdout.split("\n")[4] == "3"


def test_demo_run_sh_passes_its_settings(tmp_path):
    out = run(["./run.sh", "--dry_run", "true", "--stage", "5", "--stop_stage", "9", "--expdir", str(tmp_path)],
              DEMO).stdout
    assert f"--output_dir data/token_list --toy_llm_config conf/toy_llm.yaml --toy_llm_dir {tmp_path}/llm_init" in out
    # The demo's CTC head uses the LLM's tokens (conf/train.yaml: ctc_token_type llm): no CTC BPE is passed.
    assert f"--config conf/train.yaml --llm_conf name_or_path={tmp_path}/llm_init --use_preprocessor" in out
    assert "--ctc_bpemodel" not in out
    assert f"+ utils/local.py --gpu 0 JOB=1:2 {tmp_path}/train/decode_decode_valid.acc.ave/test/logdir/decode.JOB.log" \
        in out
    assert not any(tmp_path.iterdir())


def test_shell_files_pass_shellcheck():
    proc = run([require_shellcheck(), *OWNED_SHELL_FILES], REPO, check=False)
    assert proc.returncode == 0, proc.stdout
