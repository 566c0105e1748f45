"""egs2/synth_english/speechllm1: its configs parse with every key known (the CPU real-parts models and the GPU one
that only swaps the parts), and its run.sh wires the stages (frozen frontend dumped once, GGUF converted once)."""
from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

import pytest
import yaml

from speechllm.decoding.options import DecodingOptions
from speechllm.tasks.speech_llm import (DEFAULT_LLM_CONF, DEFAULT_MODEL_CONF, SpeechLLMTask, adapter_choices,
                                        check_conf_keys, frontend_choices)

RECIPE = Path(__file__).resolve().parents[1] / "egs2" / "synth_english" / "speechllm1"
TRAIN_CONFIGS = sorted(p.name for p in (RECIPE / "conf").glob("train*.yaml"))


def parse(name: str) -> dict:
    return vars(SpeechLLMTask.get_parser().parse_args(["--config", str(RECIPE / "conf" / name), "--output_dir", "x"]))


def unknown_keys(cls: type, conf: dict) -> list:
    parameters = inspect.signature(cls.__init__).parameters
    return [k for k in conf if k not in parameters]


@pytest.mark.parametrize("config", TRAIN_CONFIGS)
def test_train_configs_parse_with_every_key_known(config):
    args = parse(config)
    check_conf_keys("llm_conf", args["llm_conf"], DEFAULT_LLM_CONF)
    check_conf_keys("model_conf", args["model_conf"], DEFAULT_MODEL_CONF)
    assert not unknown_keys(frontend_choices.get_class(args["frontend"]), args["frontend_conf"])
    assert not unknown_keys(adapter_choices.get_class(args["speech_adapter"]), args["speech_adapter_conf"])
    # Dumpable: nothing in the frontend trains.
    assert args["frontend"] == "hf_speech_encoder" and args["frontend_conf"]["multilayer_feature"] is False


def test_gpu_config_swaps_only_the_parts():
    cpu, gpu = parse("train_whisper_smollm2_lora.yaml"), parse("train_whisper_large_qwen2_7b.yaml")
    assert gpu["frontend_conf"]["name_or_path"] == "openai/whisper-large-v3"
    assert gpu["llm_conf"]["name_or_path"] == "Qwen/Qwen2-7B"
    for key in ("frontend", "speech_adapter", "ctc_token_type"):
        assert gpu[key] == cpu[key], key
    assert gpu["model_conf"]["ctc_head"] == cpu["model_conf"]["ctc_head"] == "llm_embeddings"


def test_frozen_and_lora_variants_differ_only_in_the_llm_finetuning():
    lora, frozen = parse("train_whisper_smollm2_lora.yaml"), parse("train_whisper_smollm2_frozen.yaml")
    assert (lora["llm_conf"]["finetune"], frozen["llm_conf"]["finetune"]) == ("lora", "frozen")
    assert {k: v for k, v in lora.items() if k not in ("llm_conf", "config")} == \
        {k: v for k, v in frozen.items() if k not in ("llm_conf", "config")}


@pytest.mark.parametrize("config", ["decode.yaml", "decode_ctc.yaml"])
def test_decode_configs_hold_decoding_options(config):
    options = DecodingOptions.from_dict(yaml.safe_load((RECIPE / "conf" / config).read_text()), where=config)
    assert (options.ctc_weight > 0) == (config == "decode_ctc.yaml")


def test_run_sh_dumps_the_frozen_frontend_and_converts_the_gguf_once(tmp_path):
    out = subprocess.run(["./run.sh", "--dry_run", "true", "--stage", "5", "--stop_stage", "9", "--expdir",
                          str(tmp_path)], cwd=RECIPE, capture_output=True, text=True, check=True).stdout
    gguf = "../../../../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert f"--llm {gguf} --convert_gguf_to {tmp_path}/llm/SmolLM2-135M-Instruct.Q4_1" in out
    assert "utils/dump_frontend.sh --nj 2 --cmd utils/local.py --batch_size 8 --config " \
           "conf/train_whisper_smollm2_frozen.yaml dump/train_sp dump/frontend/train_sp" in out
    assert "--train_data_path_and_name_and_type dump/frontend/train_sp/feats.scp,speech,kaldi_ark" in out
    assert f"--llm_conf name_or_path={tmp_path}/llm/SmolLM2-135M-Instruct.Q4_1" in out
    assert "--data_path_and_name_and_type dump/frontend/real_an4/feats.scp,speech,kaldi_ark" in out
    assert not any(tmp_path.iterdir())


def test_data_sh_and_whisper_reference_list_their_options():
    for script in ("local/data.sh", "local/whisper_reference.sh"):
        out = subprocess.run([script, "--help"], cwd=RECIPE, capture_output=True, text=True).stdout
        assert "--seed" in out or "--model_dir" in out, (script, out)
