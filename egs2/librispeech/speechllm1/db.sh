#!/usr/bin/env bash
# db.sh: where each corpus lives on this machine; a recipe's local/data.sh reads its corpus's variable.
# Edit the paths for your site. An empty value means the corpus is not available here.
# shellcheck disable=SC2034  # read by the recipes' local/data.sh

# Synthesised on the spot by egs2/synth_an4/speechllm1/local/data.sh (no download): where its audio goes.
SYNTH_AN4=downloads
# LibriSpeech (https://www.openslr.org/12): the folder holding LibriSpeech/{train-clean-100,dev-clean,...}.
LIBRISPEECH=
# Loquacious Set (speechbrain/LoquaciousSet on the Hugging Face hub): the folder of its downloaded parquet files.
LOQUACIOUS=
# LRS3 (https://mmai.io/datasets/lip_reading/): the folder holding {pretrain,trainval,test}.
LRS3=
