"""The LM task: a pretrained causal LLM fine-tuned on the training transcripts through ESPnet's ``AbsTask`` (its
Trainer, resume, DDP, YAML configs), as the speech LLM is. The LLM trains fully, with LoRA, or frozen; its label
units are its own tokenizer or the corpus's BPE (``--token_type bpe``: the embedding and output layers are rebuilt
for it and train, as in the combination paradigm where the LM shares the acoustic model's units).

``python -m speechllm.bin.lm_train --help`` lists the options; ``speechllm.bin.export_lm`` writes a trained model
as a transformers folder that rescoring and fusion load like any LLM.
"""
from __future__ import annotations

import argparse
import functools
import logging
from typing import Callable, Collection, Dict, List, Tuple

import numpy as np
import torch
from espnet2.train.collate_fn import CommonCollateFn

from speechllm.models.causal_lm import IGNORE_ID, CausalLM
from speechllm.models.llm import load_causal_lm, load_tokenizer, rebuild_vocabulary
from speechllm.tasks.llm_task import DEFAULT_LLM_CONF, PretrainedLLMTask
from speechllm.tasks.conf_types import check_conf_keys
from speechllm.text.tokenizers import BPELabelUnits, SpeechLLMPreprocessor, label_tokenizer

DEFAULT_LM_MODEL_CONF = dict(
    lsm_weight=0.0,              # label smoothing
    length_normalized_loss=False,  # false (ESPnet's default): the loss is summed over each utterance's tokens
)


def load_lm_label_tokenizer(args: argparse.Namespace):
    llm_conf = check_conf_keys("llm_conf", args.llm_conf, DEFAULT_LLM_CONF)
    return label_tokenizer(args.token_type, args.bpemodel, load_tokenizer(llm_conf["name_or_path"]))


class CausalLMTask(PretrainedLLMTask):
    class_choices_list: List = []

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        cls.add_llm_arguments(parser.add_argument_group(description="Task related"), DEFAULT_LM_MODEL_CONF,
                              "CausalLM")

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]], Tuple[List[str], Dict[str, torch.Tensor]]
    ]:
        return CommonCollateFn(int_pad_value=IGNORE_ID)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        if not args.use_preprocessor:
            return None
        return SpeechLLMPreprocessor(train=train, load_label_tokenizer=functools.partial(load_lm_label_tokenizer, args))

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("text",)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ()

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> CausalLM:
        llm_conf = cls.checked_llm_conf(args)
        model_conf = check_conf_keys("model_conf", args.model_conf, DEFAULT_LM_MODEL_CONF)
        llm_tokenizer = load_tokenizer(llm_conf["name_or_path"])
        tokenizer = label_tokenizer(args.token_type, args.bpemodel, llm_tokenizer)  # checked before the LLM loads
        llm = load_causal_lm(llm_conf["name_or_path"], finetune=llm_conf["finetune"],
                             lora_conf=llm_conf["lora_conf"], dtype=llm_conf["dtype"],
                             gradient_checkpointing=llm_conf["gradient_checkpointing"])
        if isinstance(tokenizer, BPELabelUnits):
            rebuild_vocabulary(llm, llm_tokenizer, tokenizer)
        model = CausalLM(llm, tokenizer.bos_token_id, tokenizer.eos_token_id, **model_conf)
        for part, trainable, total in model.trainable_summary():
            logging.info(f"{part}: {trainable:,} of {total:,} parameters train")
        return model
