"""Text to ids for the two heads: the LLM's own tokenizer, and a SentencePiece BPE for the CTC head.

CTC ids are SentencePiece ids shifted by one: id 0 is the CTC blank (ESPnet's convention).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

import numpy as np

from speechllm.models.llm import load_tokenizer, token_ids

CTC_BLANK_ID = 0

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # data-loader workers fork; keep tokenizers quiet and safe


class CTCTokenizer:
    """SentencePiece BPE with a blank at id 0."""

    def __init__(self, bpemodel: str):
        import sentencepiece

        if not os.path.isfile(bpemodel):
            raise FileNotFoundError(f"--ctc_bpemodel: no such file '{bpemodel}' (stage 5 of the recipe writes it)")
        self.bpemodel = bpemodel
        self.sp = sentencepiece.SentencePieceProcessor(model_file=bpemodel)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() + 1

    def encode(self, text: str) -> List[int]:
        return [i + 1 for i in self.sp.encode(text)]

    def decode(self, ids) -> str:
        return self.sp.decode([int(i) - 1 for i in ids if int(i) != CTC_BLANK_ID])


class LLMVocabCTCTokenizer:
    """The LLM's own tokenizer with a blank at id 0, for a CTC head over the LLM's vocabulary.

    With the same tokens on both heads, CTC prefix scores join the LLM's in one label-synchronous beam search, and
    CTC compression yields about one speech embedding per LLM token."""

    def __init__(self, llm_tokenizer):
        self.tokenizer = llm_tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer) + 1

    def encode(self, text: str) -> List[int]:
        return [i + 1 for i in token_ids(self.tokenizer, text)]

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) - 1 for i in ids if int(i) != CTC_BLANK_ID])


CTC_TOKEN_TYPES = ("bpe", "llm")


def make_ctc_tokenizer(token_type: str, bpemodel: Optional[str], llm_tokenizer):
    """The CTC head's tokenizer, or None when there is no CTC head (``bpe`` without a model). ``llm_tokenizer`` is
    the LLM's tokenizer, already loaded by the caller, which needs it for the LLM's text anyway."""
    if token_type == "llm":
        if bpemodel:
            raise ValueError(f"--ctc_token_type llm uses the LLM's tokenizer, but --ctc_bpemodel {bpemodel} is also "
                             "given: drop one of them")
        return LLMVocabCTCTokenizer(llm_tokenizer)
    if token_type != "bpe":
        raise ValueError(f"--ctc_token_type {token_type}: must be one of {list(CTC_TOKEN_TYPES)}")
    return CTCTokenizer(bpemodel) if bpemodel else None


class SpeechLLMPreprocessor:
    """Turns the ``text`` string into LLM ids (``text``) and, with a CTC BPE model, CTC ids (``text_ctc``)."""

    def __init__(self, train: bool, llm_name_or_path: str, ctc_bpemodel: Optional[str] = None,
                 text_name: str = "text", ctc_token_type: str = "bpe", speech_is_features: bool = False):
        self.train = train
        self.speech_is_features = speech_is_features  # (frames, dims) from a frozen frontend's dump
        self.llm_name_or_path = llm_name_or_path
        self.ctc_bpemodel = ctc_bpemodel
        self.ctc_token_type = ctc_token_type
        self.text_name = text_name
        self._tokenizer = None
        self._ctc = None

    # Loaded on first use so that each data-loader worker builds its own after fork.
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.llm_name_or_path)
        return self._tokenizer

    @property
    def ctc(self):
        if self._ctc is None and (self.ctc_bpemodel or self.ctc_token_type == "llm"):
            self._ctc = make_ctc_tokenizer(self.ctc_token_type, self.ctc_bpemodel, self.tokenizer)
        return self._ctc

    def __call__(self, uid: str, data: Dict[str, object]) -> Dict[str, np.ndarray]:
        data = dict(data)
        if self.text_name in data:
            text = data[self.text_name]
            if not isinstance(text, str):
                raise TypeError(f"utterance '{uid}': '{self.text_name}' must be read as type 'text'")
            text = " ".join(text.split())
            data[self.text_name] = np.array(token_ids(self.tokenizer, text), dtype=np.int64)
            if self.ctc is not None:
                data[self.text_name + "_ctc"] = np.array(self.ctc.encode(text), dtype=np.int64)
        if "speech" in data:
            speech = np.asarray(data["speech"])
            if self.speech_is_features:
                if speech.ndim != 2:
                    raise ValueError(f"utterance '{uid}': dumped frontend features have shape {speech.shape}; "
                                     "expected (frames, dims): dump them with utils/dump_frontend.sh")
            elif speech.ndim != 1:
                raise ValueError(
                    f"utterance '{uid}': speech has shape {speech.shape}; speechllm expects mono audio "
                    "(dump it with utils/dump_audio.sh --channel N)"
                )
            data["speech"] = speech.astype(np.float32)
        return data
