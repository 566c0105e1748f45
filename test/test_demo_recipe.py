"""The demo recipe end to end, every stage, on a smaller corpus and a 2-epoch training (the full-size run and its
WER are in egs2/synth_an4/speechllm1/README.md). Runs in a temporary copy laid out as setup.sh lays out recipes."""
import os
import re
import shutil
import sys
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2/synth_an4/speechllm1"
SMALL = ["--local_data_opts", "--num_train 120 --num_dev 10 --num_test 12", "--test_sets", "test",
         "--nj", "2", "--inference_nj", "2", "--inference_batch_size", "4"]


def run_recipe(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(["./run.sh", *SMALL, *args], cwd=recipe, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    try:
        import espeakng_loader  # noqa: F401
    except ImportError:
        pytest.skip("espeakng-loader is not installed (tools/install.sh installs it)")
    root = tmp_path_factory.mktemp("recipe") / "speechllm1"
    root.mkdir()
    for name in ("run.sh", "cmd.sh", "db.sh"):
        shutil.copy(RECIPE / name, root / name)
    for name in ("conf", "local"):
        shutil.copytree(RECIPE / name, root / name)
    # The toy LLM's pretraining, shortened as the corpus is (400 steps at batch 32 would be half of stage 5-8).
    toy = root / "conf/toy_llm.yaml"
    toy.write_text(re.sub(r"(?m)^pretrain_steps: \d+", "pretrain_steps: 60", toy.read_text()))
    for name in ("speechllm.sh", "path.sh", "utils"):
        (root / name).symlink_to((RECIPE / name).resolve())
    return root


@pytest.fixture(scope="module")
def trained(recipe) -> subprocess.CompletedProcess:
    return run_recipe(recipe, "--train_args", "--max_epoch 2")


def test_every_stage_runs_and_writes_its_outputs(recipe, trained):
    log = trained.stdout + trained.stderr
    for stage in range(1, 12):
        assert re.search(rf"Stage {stage}: .*: finished in", log), f"stage {stage} did not finish"
    assert (recipe / "data/train/wav.scp").is_file()
    assert (recipe / "data/token_list/llm_tokens_report.txt").is_file()
    assert (recipe / "exp/llm_init/config.json").is_file()
    model_dir = recipe / "exp/train"
    assert (model_dir / "checkpoint.pth").is_file() and (model_dir / "2epoch.pth").is_file()
    decode_dirs = list(model_dir.glob("decode_*/test"))
    assert len(decode_dirs) == 1
    hyps = (decode_dirs[0] / "text").read_text().splitlines()
    refs = (recipe / "data/test/text").read_text().splitlines()
    assert [h.split()[0] for h in hyps] == [r.split()[0] for r in refs]  # every test utterance, in order
    result = (decode_dirs[0] / "score_wer/result.txt").read_text()
    assert "Sum/Avg" in result and "| SPKR" in result
    assert (decode_dirs[0] / "score_cer/result.txt").is_file()
    assert "test" in (model_dir / "RESULTS.md").read_text()
    assert (model_dir / "packed.zip").is_file()


def test_packed_model_decodes_like_the_recipe(recipe, trained, tmp_path):
    decode_dir = next((recipe / "exp/train").glob("decode_*/test"))
    dump_wav = recipe / "dump/test/wav.scp"
    # The recipe's first decoding job, in the recipe's batches: the same padded batches give the same numbers (a
    # barely trained model's hypotheses may change at near-ties when the batch composition changes; that batch
    # invariance is checked with tolerances in test_speech2text.py).
    keys = decode_dir / "logdir/keys.1.scp"
    batch_size = SMALL[SMALL.index("--inference_batch_size") + 1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    subprocess.run(
        [sys.executable, "-m", "speechllm.bin.speechllm_inference", "--packed_model", "exp/train/packed.zip",
         "--config", "conf/decode.yaml", "--data_path_and_name_and_type", f"{dump_wav.relative_to(recipe)},speech,sound",
         "--key_file", str(keys), "--batch_size", batch_size, "--output_dir", str(tmp_path / "out")],
        cwd=recipe, env=env, check=True, capture_output=True, timeout=300,
    )
    packed = (tmp_path / "out/1best_recog/text").read_text().splitlines()
    recipe_hyps = dict(line.split(" ", 1) if " " in line else (line, "") for line in
                       (decode_dir / "text").read_text().splitlines())
    assert len(packed) == len(keys.read_text().splitlines()) >= 2
    for line in packed:
        key, _, words = line.partition(" ")
        assert recipe_hyps[key].strip() == words.strip()


def test_decoding_again_reruns_only_unfinished_jobs_and_never_keeps_stale_text(recipe, trained):
    decode_dir = next((recipe / "exp/train").glob("decode_*/test"))
    first = (decode_dir / "text").read_text()
    stage9 = ("--stage", "9", "--stop_stage", "9")
    again = run_recipe(recipe, *stage9)
    assert "skipping 2 of 2 tasks" in again.stderr and (decode_dir / "text").read_text() == first
    # Job 2 killed before it ended (its log has no footer), and a stale line in the merged text: job 2 alone runs
    # again and the merged text holds exactly the new hypotheses.
    log2 = decode_dir / "logdir/decode.2.log"
    log2.write_text("".join(log2.read_text().splitlines(keepends=True)[:-2]))
    with open(decode_dir / "text", "a") as f:
        f.write("stale-utterance words of an earlier run\n")
    again = run_recipe(recipe, *stage9)
    assert "skipping 1 of 2 tasks (JOB=1)" in again.stderr
    assert (decode_dir / "text").read_text() == first
    # Other inputs (a retrained or averaged model: the file changes): every job runs again.
    model = (recipe / "exp/train/valid.acc.ave.pth").resolve()
    later = model.stat().st_mtime + 10
    os.utime(model, (later, later))
    again = run_recipe(recipe, *stage9)
    assert "skipping" not in again.stderr and "from the same inputs" not in again.stdout + again.stderr
    assert (decode_dir / "text").read_text() == first


def test_training_resumes_from_its_checkpoint(recipe, trained):
    result = run_recipe(recipe, "--stage", "8", "--stop_stage", "8", "--train_args", "--max_epoch 3")
    train_log = (recipe / "exp/train/train.log").read_text()
    assert "resumed" in train_log.lower(), train_log[-2000:]
    assert "3epoch results" in train_log and "1epoch results" not in train_log
    assert (recipe / "exp/train/3epoch.pth").is_file()
    assert "Stage 8" in result.stdout + result.stderr


AM = ("--task", "asr", "--train_config", "conf/train_am.yaml", "--am_bpe_vocab_size", "40",
      "--test_sets", "dev test")


@pytest.fixture(scope="module")
def trained_am(recipe, trained) -> subprocess.CompletedProcess:
    """The combination paradigm on the same data: an AED + CTC AM trained by ESPnet's ASRTask (1 epoch), decoded
    alone with 4-best lists rescored by the toy LLM of stage 5."""
    return run_recipe(recipe, *AM, "--stage", "5", "--stop_stage", "11", "--train_args", "--max_epoch 1",
                      "--decode_config", "conf/decode_am_nbest.yaml", "--rescore_lm", "exp/llm_init",
                      "--rescore_opts", "--lm_weights 0,0.5 --length_bonuses 0")


def test_an_espnet_acoustic_model_trains_decodes_and_rescores(recipe, trained_am):
    log = trained_am.stdout + trained_am.stderr
    assert "espnet2.bin.asr_train --collect_stats true" in log and "espnet2.bin.asr_train --config" in log
    tokens = (recipe / "data/token_list/am_tokens.txt").read_text().split()
    assert tokens[0] == "<blank>" and tokens[-1] == "<sos/eos>"
    model_dir = recipe / "exp/train_am"
    assert "1epoch results" in (model_dir / "train.log").read_text()
    for decode in ("decode_decode_am_nbest_valid.acc.ave", "decode_decode_am_nbest_valid.acc.ave_rescore_llm_init"):
        for test_set in ("dev", "test"):
            folder = model_dir / decode / test_set
            keys = [line.split()[0] for line in (recipe / f"dump/{test_set}/text").read_text().splitlines()]
            assert [line.split()[0] for line in (folder / "text").read_text().splitlines()] == keys
            assert "Sum/Avg" in (folder / "score_wer/result.txt").read_text()
    assert (model_dir / "decode_decode_am_nbest_valid.acc.ave/test/4best_recog/text").is_file()
    assert (model_dir / "packed.zip").is_file()  # ESPnet's own archive


def test_an_espnet_acoustic_model_decodes_with_delayed_llm_fusion(recipe, trained_am):
    run_recipe(recipe, *AM, "--stage", "9", "--stop_stage", "10", "--decode_config", "conf/decode_am_delayed.yaml",
               "--test_sets", "test")
    folder = recipe / "exp/train_am/decode_decode_am_delayed_valid.acc.ave/test"
    assert "Sum/Avg" in (folder / "score_wer/result.txt").read_text()
    log = (folder / "logdir/decode.1.log").read_text()
    assert "proposer decoder: decoder AEDDecoderScorer x 0.7, ctc CTCScorer x 0.3, lm DelayedLMScorer x 0.3" in log


def test_an_llm_fine_tuned_on_the_ams_bpe_fuses_with_it_label_by_label(recipe, trained_am):
    """--task lm fine-tunes the demo's LLM on the transcripts over the AM's BPE (1 epoch) and exports it (stage 11);
    the AM then decodes with it fused label by label (conf/decode_am_label.yaml)."""
    lm_task = ("--task", "lm", "--llm_token_type", "bpe", "--am_bpe_vocab_size", "40",
               "--train_config", "conf/train_lm.yaml")
    result = run_recipe(recipe, *lm_task, "--stage", "7", "--stop_stage", "11", "--train_args", "--max_epoch 1")
    log = result.stdout + result.stderr
    assert "speechllm.bin.lm_train --collect_stats true" in log and "--task lm decodes nothing" in log
    assert "1epoch results" in (recipe / "exp/train_lm/train.log").read_text()
    exported = recipe / "exp/train_lm/exported"
    assert (exported / "label_units.yaml").is_file() and (exported / "config.json").is_file()
    run_recipe(recipe, *AM, "--stage", "9", "--stop_stage", "10", "--decode_config", "conf/decode_am_label.yaml",
               "--test_sets", "test")
    folder = recipe / "exp/train_am/decode_decode_am_label_valid.acc.ave/test"
    assert "Sum/Avg" in (folder / "score_wer/result.txt").read_text()
    decode_log = (folder / "logdir/decode.1.log").read_text()
    assert "proposer decoder: decoder AEDDecoderScorer x 0.7, ctc CTCScorer x 0.3, lm CausalLMScorer x 0.3" in \
        decode_log
