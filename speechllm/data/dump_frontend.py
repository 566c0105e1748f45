"""utils/dump_frontend.sh: run a frozen frontend (e.g. Whisper's encoder) once over a data dir and dump its outputs.

    utils/dump_frontend.sh [--nj 4] [--cmd utils/local.py] [--batch_size 8] --config conf/train.yaml \
        dump/x dump/frontend/x

A pretrained speech encoder that does not train gives the same output every epoch: computing it once and training
(and decoding) from the dump saves that cost in every epoch. The frontend is built from the training config
(``frontend``, ``frontend_conf``, ``freeze_param``) exactly as training builds it, and must have nothing left to
train (e.g. ``multilayer_feature: false`` for hf_speech_encoder: learned layer weights would change its output).

Writes dump/frontend/x: ``feats.scp`` (Kaldi float matrices, frames x dims, in ``data/feats.JOB.ark``),
``feats_shape``, the data dir's ``text``, ``utt2spk``, ``spk2utt``, and ``frontend.yaml``, the record of the
frontend config that made the features. Training with ``feats.scp,speech,kaldi_ark`` then skips the frontend; a
dump made with another frontend config is refused (``--verify``). Rerunning with the same config and utterances
does nothing.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from speechllm.data.cli import run_tool
from speechllm.data.datadir import DataDir, DataDirError, Problem, c_order, read_kv, write_kv
from speechllm.data.dump_audio import run_jobs
from speechllm.data.split import split_data
from speechllm.data.validate import require_valid

PROG = "utils/dump_frontend.sh"
DONE = "dump_frontend: done"
RECORD = "frontend.yaml"
COPIED = ("text", "utt2spk", "spk2utt")


# ---- the frontend ----------------------------------------------------------------------------------------------
def frontend_record(config: dict) -> dict:
    """What decides the frontend's output: its name, its conf and the freeze_param entries that reach it."""
    return {
        "frontend": config.get("frontend", "default"),
        "frontend_conf": config.get("frontend_conf") or {},
        "freeze_param": sorted(p for p in config.get("freeze_param") or [] if p.startswith("frontend")),
    }


def read_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f) or {}
    except OSError as error:
        raise DataDirError(Problem(path, None, f"cannot read the training config ({error.strerror})",
                                   "pass --config with the recipe's training config")) from None
    if not config.get("frontend", "default"):
        raise DataDirError(Problem(path, None, "has no frontend (frontend: null): there is nothing to dump",
                                   "dump a config with a frontend, or train from the audio"))
    return config


def build_frozen_frontend(config: dict, config_path: str):
    """The frontend as the task builds it, in eval mode; refuses one with trainable parameters."""
    import torch

    from speechllm.tasks.speech_llm import build_part, freeze_parameters, frontend_choices

    record = frontend_record(config)
    frontend = build_part("frontend", frontend_choices.get_class(record["frontend"]), record["frontend_conf"])
    holder = torch.nn.Module()
    holder.frontend = frontend  # so that freeze_param names ("frontend.upstream") resolve as in the model
    freeze_parameters(holder, record["freeze_param"])
    trainable = [name for name, p in frontend.named_parameters() if p.requires_grad]
    if trainable:
        raise DataDirError(Problem(
            config_path, None,
            f"its frontend '{record['frontend']}' has parameters that train ({', '.join(trainable[:4])}"
            f"{' ...' if len(trainable) > 4 else ''}), so its output changes during training and cannot be dumped",
            "freeze them (freeze_param, or frontend_conf multilayer_feature: false / freeze: true), or train "
            "from the audio"))
    return frontend.eval()


# ---- one job -----------------------------------------------------------------------------------------------------
def dump_job(config_path: str, data_dir: Path, out_prefix: Path, batch_size: int) -> int:
    """Frontend outputs of data_dir's utterances into OUT_PREFIX.ark/.scp and OUT_PREFIX.shape."""
    import kaldiio
    import torch

    from speechllm.tasks.speech_llm import SpeechLLMTask

    config = read_config(config_path)
    frontend = build_frozen_frontend(config, config_path)
    loader = SpeechLLMTask.build_streaming_iterator(
        [(str(data_dir / "wav.scp"), "speech", "sound")], dtype="float32", batch_size=batch_size,
        key_file=None, num_workers=0, preprocess_fn=None,
        collate_fn=SpeechLLMTask.build_collate_fn(argparse.Namespace(), False), inference=True)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    shapes, done, start = [], 0, time.time()
    total = len(read_kv(data_dir / "wav.scp"))
    with torch.no_grad(), kaldiio.WriteHelper(f"ark,scp:{out_prefix}.ark,{out_prefix}.scp") as writer:
        for keys, batch in loader:
            speech, lengths = batch["speech"], batch["speech_lengths"]
            if speech.dim() != 2:
                raise DataDirError(Problem(str(data_dir / "wav.scp"), None,
                                           f"utterance {keys[0]} is not mono audio (shape {tuple(speech.shape)})",
                                           "dump the audio first (utils/dump_audio.sh --channel N)"))
            try:
                feats, feats_lengths = frontend(speech, lengths)
            except ValueError as error:
                raise DataDirError(Problem(str(data_dir / "wav.scp"), None, f"utterances {', '.join(keys)}: {error}",
                                           "segment or remove them (utils/filter_data_dir.sh --max_duration)"))
            for key, feat, n in zip(keys, feats, feats_lengths.tolist()):
                matrix = feat[:n].float().numpy()
                writer[key] = matrix
                shapes.append(f"{key} {matrix.shape[0]},{matrix.shape[1]}")
            done += len(keys)
            if done % max(1, total // 10) < len(keys) or done == total:
                logging.info(f"{done}/{total} utterances ({time.time() - start:.0f} s)")
    Path(f"{out_prefix}.shape").write_text("".join(line + "\n" for line in shapes), encoding="utf-8")
    print(DONE, flush=True)
    return 0


# ---- the whole data dir ------------------------------------------------------------------------------------------
def is_up_to_date(out_dir: Path, record: dict, utt_ids: List[str]) -> bool:
    try:
        with open(out_dir / RECORD, encoding="utf-8") as f:
            old = yaml.safe_load(f)
        return old.get("frontend_record") == record and set(read_kv(out_dir / "feats.scp")) == set(utt_ids)
    except (OSError, DataDirError, AttributeError):
        return False


def verify(out_dir: str | Path, config_path: str) -> dict:
    """The dump's record, if it was made by this config's frontend; otherwise an error saying how to fix it."""
    out_dir = Path(out_dir)
    record = frontend_record(read_config(config_path))
    try:
        with open(out_dir / RECORD, encoding="utf-8") as f:
            old = yaml.safe_load(f) or {}
    except OSError:
        raise DataDirError(Problem(str(out_dir / RECORD), None, "is missing: the features were not dumped "
                                   "(or not completely)", "run the frontend dumping stage")) from None
    if old.get("frontend_record") != record:
        raise DataDirError(Problem(str(out_dir / RECORD), None,
                                   f"records features of another frontend config ({old.get('frontend_record')}) "
                                   f"than {config_path} ({record})", "rerun the frontend dumping stage"))
    return old


def dump_frontend(data_dir: str | Path, out_dir: str | Path, config_path: str, nj: int = 4,
                  cmd: str = "utils/local.py", batch_size: int = 8) -> Dict:
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if nj < 1 or batch_size < 1:
        raise DataDirError(Problem("--nj/--batch_size", None, f"must be at least 1, not {nj}/{batch_size}",
                                   "pass --nj 4 --batch_size 8, say"))
    require_valid(data_dir)
    data = DataDir.read(data_dir)
    config = read_config(config_path)
    record = frontend_record(config)
    if is_up_to_date(out_dir, record, data.utt_ids):
        print(f"{PROG}: {out_dir} is up to date (same frontend config and utterances): nothing to do",
              file=sys.stderr)
        with open(out_dir / RECORD, encoding="utf-8") as f:
            return yaml.safe_load(f)
    build_frozen_frontend(config, config_path)  # refuses a frontend that trains before any job starts
    nj = min(nj, len(data.utt_ids))
    logs = out_dir / "logs"
    (out_dir / RECORD).unlink(missing_ok=True)  # the record marks a complete dump: none while it is made
    shutil.rmtree(out_dir / "data", ignore_errors=True)
    for job in range(1, nj + 1):
        (logs / f"dump.{job}.log").unlink(missing_ok=True)
    split_data(data_dir, nj, per_utt=True, out_root=logs / f"split{nj}")
    argv = shlex.split(cmd) + [
        f"JOB=1:{nj}", str(logs / "dump.JOB.log"), sys.executable, "-m", "speechllm.data.dump_frontend", "--job",
        "--config", config_path, "--batch_size", str(batch_size), str(logs / f"split{nj}" / "JOB"),
        str(out_dir / "data" / "feats.JOB")]
    if run_jobs(argv) != 0:
        failed = [logs / f"dump.{j}.log" for j in range(1, nj + 1)
                  if DONE not in (logs / f"dump.{j}.log").read_text(errors="replace")]
        errors = [line for log in failed for line in log.read_text(errors="replace").splitlines()
                  if line.startswith(PROG) or "Error" in line][:5]
        raise DataDirError(Problem(str(out_dir), None, f"{len(failed)} of {nj} job(s) failed"
                                   + "".join(f"\n  {line}" for line in errors),
                                   f"see {', '.join(map(str, failed[:3]))}; fix the cause and run the same command "
                                   "again"))
    feats, shapes = {}, {}
    for job in range(1, nj + 1):
        feats.update(read_kv(out_dir / "data" / f"feats.{job}.scp"))
        shapes.update(read_kv(out_dir / "data" / f"feats.{job}.shape"))
    missing = sorted(set(data.utt_ids) - set(feats), key=c_order)
    if missing:
        raise DataDirError(Problem(str(out_dir), None, f"{len(missing)} utterances have no features "
                                   f"(first: {missing[:3]})", f"see the logs in {logs} and rerun"))
    write_kv(out_dir / "feats.scp", feats)
    write_kv(out_dir / "feats_shape", shapes)
    for name in COPIED:
        if (data_dir / name).is_file():
            shutil.copyfile(data_dir / name, out_dir / name)
    dims = {shape.split(",")[1] for shape in shapes.values()}
    frames = sum(int(shape.split(",")[0]) for shape in shapes.values())
    result = {"frontend_record": record, "data_dir": str(data_dir), "utterances": len(feats),
              "frames": frames, "dim": int(dims.pop()) if len(dims) == 1 else sorted(dims)}
    (out_dir / RECORD).write_text(yaml.safe_dump(result, sort_keys=False), encoding="utf-8")
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the training config whose frontend is dumped")
    parser.add_argument("--nj", type=int, default=4, help="number of parallel jobs (default 4)")
    parser.add_argument("--cmd", default="utils/local.py",
                        help="job launcher, called as: $cmd JOB=1:nj log.JOB.log command... (default utils/local.py)")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances per frontend call (default 8)")
    parser.add_argument("--verify", action="store_true",
                        help="only check that OUT_DIR holds a complete dump of this config's frontend")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)  # one job: DATA_DIR OUT_PREFIX
    parser.add_argument("data_dir", help="the data dir to dump (with --verify: the dump dir)")
    parser.add_argument("out_dir", nargs="?", help="where the features go (not with --verify)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")

    def body() -> int:
        if args.job:
            return dump_job(args.config, Path(args.data_dir), Path(args.out_dir), args.batch_size)
        if args.verify:
            record = verify(args.data_dir, args.config)
            print(f"{PROG}: {args.data_dir}: {record['utterances']} utterances of the frontend of {args.config}")
            return 0
        if not args.out_dir:
            parser.error("give DATA_DIR and OUT_DIR")
        result = dump_frontend(args.data_dir, args.out_dir, args.config, args.nj, args.cmd, args.batch_size)
        print(f"{PROG}: wrote {args.out_dir}: {result['utterances']} utterances, {result['frames']} frames of "
              f"dimension {result['dim']}")
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
