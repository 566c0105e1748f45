"""What speechllm's two ESPnet tasks share (the speech LLM, speechllm.tasks.speech_llm; the LM fine-tuned on
transcripts, speechllm.tasks.causal_lm): the Trainer, the data loader of statistics and decoding, safe dict options,
and the options of the pretrained LLM and its label units."""
from __future__ import annotations

import argparse

from espnet2.tasks.abs_task import AbsTask
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool, str_or_none

from speechllm.tasks.conf_types import check_conf_keys
from speechllm.tasks.safe_args import safe_dict_options
from speechllm.tasks.streaming import build_streaming_iterator
from speechllm.text.tokenizers import TOKEN_TYPES
from speechllm.train.trainer import SpeechLLMTrainer

DEFAULT_LLM_CONF = dict(name_or_path=None, finetune="lora", lora_conf={}, dtype="float32",
                        gradient_checkpointing=False)


class PretrainedLLMTask(AbsTask):
    num_optimizers: int = 1
    trainer = SpeechLLMTrainer  # ESPnet's, with weights_only loading and atomic checkpoint writes
    build_streaming_iterator = classmethod(build_streaming_iterator)  # reads empty transcripts; keeps batch sizes

    @classmethod
    def get_parser(cls):
        return safe_dict_options(super().get_parser())  # --x_conf values through yaml.safe_load, never eval()

    @staticmethod
    def add_llm_arguments(group: argparse._ArgumentGroup, model_conf_defaults: dict, model_name: str) -> None:
        """--llm_conf, --model_conf (``model_conf_defaults``), --token_type, --bpemodel and --use_preprocessor."""
        group.add_argument("--llm_conf", action=NestedDictAction, default=dict(DEFAULT_LLM_CONF),
                           help="The LLM: name_or_path (folder, .gguf file or hub name), finetune "
                                "(frozen|lora|full), lora_conf (r, alpha, dropout, target_modules), dtype")
        group.add_argument("--model_conf", action=NestedDictAction, default=dict(model_conf_defaults),
                           help=f"{model_name} options: {', '.join(model_conf_defaults)}")
        group.add_argument("--token_type", choices=TOKEN_TYPES, default="llm",
                           help="The LLM's label units: llm (its own tokenizer) or bpe (the corpus's SentencePiece "
                                "BPE, --bpemodel; the LLM's input embedding and output layer are rebuilt for it, "
                                "each piece's row initialised from the LLM's rows of its spelling)")
        group.add_argument("--bpemodel", type=str_or_none, default=None,
                           help="SentencePiece model of the LLM's label units (--token_type bpe)")
        group.add_argument("--use_preprocessor", type=str2bool, default=True,
                           help="Tokenize the text on the fly (needed for training and statistics)")

    @staticmethod
    def checked_llm_conf(args: argparse.Namespace) -> dict:
        """--llm_conf completed with its defaults; the LLM must be named."""
        llm_conf = check_conf_keys("llm_conf", args.llm_conf, DEFAULT_LLM_CONF)
        if not llm_conf["name_or_path"]:
            raise ValueError("llm_conf.name_or_path is not set: give the LLM in the config or with "
                             "--llm_conf name_or_path=DIR (a save_pretrained folder, a .gguf file or a hub name)")
        return llm_conf
