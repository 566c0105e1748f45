"""Text to ids for the two heads: the LLM's label units (its own tokenizer, or the corpus's SentencePiece BPE with
the LLM's embeddings rebuilt for it: ``--token_type bpe``), and a SentencePiece BPE for the CTC head.

CTC ids are SentencePiece ids shifted by one: id 0 is the CTC blank (ESPnet's convention).
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from speechllm.models.llm import token_ids

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
TOKEN_TYPES = ("llm", "bpe")  # the LLM's label units (--token_type)


class BPELabelUnits:
    """The corpus's SentencePiece BPE as the LLM's label units (``--token_type bpe``): ids ``0..N-1`` are its pieces,
    then the LLM tokens the model still reads or writes (``kept_llm_ids``: EOS, BOS, the prompt's tokens), whose
    rows the rebuilt vocabulary copies from the LLM (speechllm.models.llm.rebuild_vocabulary). Offers the part of a
    transformers tokenizer that the toolkit calls."""

    pad_token_id = None

    def __init__(self, bpemodel: str, llm_tokenizer, kept_llm_ids: Sequence[int]):
        import sentencepiece

        if not bpemodel or not os.path.isfile(bpemodel):
            raise FileNotFoundError(f"--bpemodel: no such file '{bpemodel}'; --token_type bpe needs the corpus's "
                                    "SentencePiece BPE (stage 5 of the recipe writes it with --llm_token_type bpe)")
        self.bpemodel = bpemodel
        self.sp = sentencepiece.SentencePieceProcessor(model_file=bpemodel)
        self.num_pieces = self.sp.get_piece_size()
        self.llm_tokenizer = llm_tokenizer
        self.kept_llm_ids = [i for i in dict.fromkeys(kept_llm_ids) if i is not None]
        self.from_llm_id = {old: self.num_pieces + n for n, old in enumerate(self.kept_llm_ids)}
        self.eos_token_id = self.from_llm_id[llm_tokenizer.eos_token_id]
        self.bos_token_id = self.from_llm_id.get(llm_tokenizer.bos_token_id)

    def __len__(self) -> int:
        return self.num_pieces + len(self.kept_llm_ids)

    def __call__(self, text: str, add_special_tokens: bool = False) -> Dict[str, List[int]]:
        return {"input_ids": self.sp.encode(text)}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) < self.num_pieces])

    def convert_ids_to_tokens(self, ids) -> List[str]:
        return [self.sp.id_to_piece(int(i)) if int(i) < self.num_pieces
                else self.llm_tokenizer.convert_ids_to_tokens(self.kept_llm_ids[int(i) - self.num_pieces])
                for i in ids]

    def piece_spellings(self) -> List[Optional[str]]:
        """Each piece as text (the word-start mark as a space), for the LLM's tokenizer to spell; None for
        ``<unk>`` and control pieces, which spell nothing."""
        return [None if self.sp.is_unknown(i) or self.sp.is_control(i) else self.sp.id_to_piece(i).replace("\u2581", " ")
                for i in range(self.num_pieces)]

    def suppressed_ids(self) -> List[int]:
        """What the search never emits: the kept LLM tokens other than EOS (BOS, the prompt's)."""
        return [i for i in self.from_llm_id.values() if i != self.eos_token_id]


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


def prompt_label_ids(tokenizer, text: str, where: str = "model_conf.prompt") -> List[int]:
    """A prompt's ids as the LLM reads them: its tokenizer's, or with ``BPELabelUnits`` the kept LLM tokens' label
    ids (a prompt of tokens that the rebuilt vocabulary does not keep is an error naming ``where``)."""
    if not isinstance(tokenizer, BPELabelUnits):
        return list(token_ids(tokenizer, text)) if text else []
    ids = list(token_ids(tokenizer.llm_tokenizer, text)) if text else []
    unknown = [i for i in ids if i not in tokenizer.from_llm_id]
    if unknown:
        raise ValueError(f"{where} '{text}': the LLM tokens {tokenizer.llm_tokenizer.convert_ids_to_tokens(unknown)} "
                         "are not in the model's rebuilt vocabulary (--token_type bpe keeps only the training "
                         "prompts' tokens): use words of the training prompts (model_conf.prompt, prompt_variants)")
    return [tokenizer.from_llm_id[i] for i in ids]


def label_tokenizer(token_type: str, bpemodel: Optional[str], llm_tokenizer, prompts: Sequence[str] = ()):
    """The LLM's label units: its own tokenizer (``token_type`` llm), or the corpus's BPE (bpe) keeping the LLM
    tokens the model reads or writes besides the text: EOS, BOS and the ``prompts``' tokens. ``token_type`` and
    ``bpemodel`` are the training options ``--token_type`` and ``--bpemodel``."""
    if token_type not in TOKEN_TYPES:
        raise ValueError(f"--token_type {token_type}: must be one of {list(TOKEN_TYPES)}")
    if token_type == "llm":
        if bpemodel:
            raise ValueError(f"--bpemodel {bpemodel} is given but --token_type is llm (the LLM's own tokenizer): "
                             "drop it, or set --token_type bpe")
        return llm_tokenizer
    kept = [llm_tokenizer.eos_token_id, llm_tokenizer.bos_token_id]
    for prompt in prompts:
        kept += list(token_ids(llm_tokenizer, prompt)) if prompt else []
    return BPELabelUnits(bpemodel, llm_tokenizer, kept)


class SpeechLLMPreprocessor:
    """Turns the ``text`` string into the LLM's label ids (``text``) and, with a CTC vocabulary, CTC ids
    (``text_ctc``). ``load_label_tokenizer()`` gives the LLM's label units (its tokenizer or ``BPELabelUnits``)."""

    def __init__(self, train: bool, load_label_tokenizer: Callable[[], object], ctc_bpemodel: Optional[str] = None,
                 text_name: str = "text", ctc_token_type: str = "bpe", speech_is_features: bool = False,
                 augmentation: Optional[Callable[[np.ndarray], np.ndarray]] = None):
        self.train = train
        self.augmentation = augmentation  # RIR and noise on the training audio (speechllm.data.augment)
        self.speech_is_features = speech_is_features  # (frames, dims) from a frozen frontend's dump
        self.load_label_tokenizer = load_label_tokenizer
        self.ctc_bpemodel = ctc_bpemodel
        self.ctc_token_type = ctc_token_type
        self.text_name = text_name
        self._tokenizer = None
        self._ctc = None

    # Loaded on first use so that each data-loader worker builds its own after fork.
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = self.load_label_tokenizer()
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
            elif self.augmentation is not None and self.train:
                speech = self.augmentation(speech)
            data["speech"] = speech.astype(np.float32)
        return data
