#!/usr/bin/env python3
"""Fine-tune a pretrained causal LLM on transcripts (or collect its statistics with --collect_stats true): ESPnet's
AbsTask.main over speechllm.tasks.causal_lm.CausalLMTask, with the output dir locked as in speechllm_train.

Run ``python -m speechllm.bin.lm_train --help`` for every option, ``--print_config`` for a full config.
"""
from speechllm.bin.speechllm_train import run_task
from speechllm.tasks.causal_lm import CausalLMTask


def get_parser():
    return CausalLMTask.get_parser()


def main(cmd=None):
    run_task(CausalLMTask, cmd)


if __name__ == "__main__":
    main()
