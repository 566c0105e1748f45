"""A conventional acoustic model trained by ESPnet's own ``ASRTask`` (AED + CTC over a SentencePiece BPE), as the
combination paradigm's first pass: our batched search decodes it (speechllm.decoding.search.BeamSearch.for_aed),
alone or fused with an LLM.

    am = ESPnetAM.from_files("exp/am/config.yaml", "exp/am/valid.acc.ave.pth")
    speech = am.encode_speech(wavs, lengths)           # SpeechInput: the encoder runs once per batch
    am.text(token_ids)                                 # "the transcript"

ESPnet's label convention: ``<blank>`` is id 0 (the CTC blank), ``<sos/eos>`` the last id; the CTC head and the
decoder share the ids, so a search label is its CTC id.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import torch
import yaml

from speechllm.decoding.scorers import SpeechInput
from speechllm.models.batch_exact import make_batch_exact


def is_espnet_asr_config(train_config: str) -> bool:
    """Whether a training config.yaml was written by ESPnet's ASRTask (it has a token list and an AED decoder, and
    no LLM) rather than by speechllm's SpeechLLMTask."""
    with open(train_config, encoding="utf-8") as f:
        conf = yaml.safe_load(f) or {}
    return "llm_conf" not in conf and "token_list" in conf and "decoder" in conf


class ESPnetTokenList:
    """Text to and from an ESPnet ASR model's label ids (its ``token_type`` tokenizer and ``token_list``), with the
    few methods of a transformers tokenizer that the decoding code calls."""

    def __init__(self, token_list: Sequence[str], token_type: str, bpemodel: Optional[str]):
        from espnet2.text.build_tokenizer import build_tokenizer
        from espnet2.text.token_id_converter import TokenIDConverter

        if token_type == "bpe" and not (bpemodel and Path(bpemodel).is_file()):
            raise FileNotFoundError(f"the AM's BPE model '{bpemodel}' (bpemodel in its config.yaml) does not exist: "
                                    "decode from the recipe dir that trained it, or fix the path in config.yaml")
        self.token_list = list(token_list)
        self.tokenizer = build_tokenizer(token_type=token_type, bpemodel=bpemodel)
        self.converter = TokenIDConverter(token_list=self.token_list)
        self.eos_token_id = self.bos_token_id = len(self.token_list) - 1  # <sos/eos>
        self.pad_token_id = None
        # Labels that spell no text; the search never proposes the blank (its decoder may propose <unk>, as ESPnet's).
        self.special_ids = [i for i, t in enumerate(self.token_list) if t.startswith("<") and t.endswith(">")]
        self.blank_id = self.token_list.index("<blank>") if "<blank>" in self.token_list else None

    def __len__(self) -> int:
        return len(self.token_list)

    def encode(self, text: str) -> List[int]:
        return self.converter.tokens2ids(self.tokenizer.text2tokens(text))

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> List[str]:
        return self.converter.ids2tokens(list(ids))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        special = set(self.special_ids) if skip_special_tokens else set()
        return self.tokenizer.tokens2text(self.convert_ids_to_tokens([i for i in ids if i not in special]))


def lm_ids_of_am_labels(token_list: Sequence[str], lm_tokenizer) -> Optional[List[int]]:
    """For an LM whose label units are the AM's BPE (trained by speechllm.bin.lm_train with --token_type bpe on the
    same SentencePiece model, and exported): the LM id of each AM label, the AM's ``<blank>`` (never proposed) as
    the LM's ``<unk>`` piece and ``<sos/eos>`` as the LM's EOS. None for an LM of other units."""
    from speechllm.text.tokenizers import BPELabelUnits

    if not isinstance(lm_tokenizer, BPELabelUnits) or list(token_list[:1]) + list(token_list[-1:]) != [
            "<blank>", "<sos/eos>"]:
        return None
    pieces = [lm_tokenizer.sp.id_to_piece(i) for i in range(lm_tokenizer.num_pieces)]
    if list(token_list[1:-1]) != pieces:
        return None
    return [lm_tokenizer.sp.unk_id()] + list(range(lm_tokenizer.num_pieces)) + [lm_tokenizer.eos_token_id]


class ESPnetAM:
    """An ESPnet ``ESPnetASRModel`` seen by the search: the encoder output as ``SpeechInput``, the CTC head's
    log-posteriors, the decoder, and the label ids."""

    def __init__(self, model: torch.nn.Module, tokenizer: ESPnetTokenList, args=None):
        if getattr(model, "decoder", None) is None or getattr(model, "ctc", None) is None:
            raise ValueError("the acoustic model needs an attention decoder and a CTC head (ESPnet's ASRTask with "
                             "decoder: transformer and 0 < ctc_weight < 1)")
        self.model, self.tokenizer, self.args = model.eval(), tokenizer, args  # args: the training config's
        self.decoder, self.token_list = model.decoder, tokenizer.token_list
        self.sos_id = self.eos_id = tokenizer.eos_token_id
        self.special_ids = tokenizer.special_ids
        make_batch_exact(model)  # a padded batch decodes as each of its utterances alone
        self.frontend = model.frontend
        self.max_positions = None  # no LLM context to fit in
        # Label units: the token list itself (two AMs share units exactly when their token lists agree).
        self.vocab = f"espnet:{len(self.token_list)}:{hash(tuple(self.token_list)) & 0xFFFFFFFF:08x}"

    @classmethod
    def from_files(cls, train_config: str, model_file: Optional[str], device: str = "cpu") -> "ESPnetAM":
        from espnet2.tasks.asr import ASRTask

        model, args = ASRTask.build_model_from_file(train_config, model_file, device)
        return cls(model, ESPnetTokenList(args.token_list, args.token_type, args.bpemodel), args)

    def to(self, *args, **kwargs) -> "ESPnetAM":
        self.model.to(*args, **kwargs)
        return self

    def encode_speech(self, speech: torch.Tensor, lengths: torch.Tensor) -> SpeechInput:
        encoded, encoded_lengths = self.model.encode(speech, lengths)
        # The search's length limits count encoder frames: there is no adapter between encoder and decoder.
        return SpeechInput(encoded, encoded_lengths, encoded, encoded_lengths)

    def ctc_log_probs(self, speech: SpeechInput):
        return self.model.ctc.log_softmax(speech.encoded), speech.encoded_lengths
