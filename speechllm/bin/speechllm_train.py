#!/usr/bin/env python3
"""Train a speech LLM (or collect its statistics with --collect_stats true): ESPnet's AbsTask.main.

Run ``python -m speechllm.bin.speechllm_train --help`` for every option, ``--print_config`` for a full config.
"""
from speechllm.tasks.speech_llm import SpeechLLMTask


def get_parser():
    return SpeechLLMTask.get_parser()


def main(cmd=None):
    SpeechLLMTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
