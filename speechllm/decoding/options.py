"""Decoding options: one frozen dataclass, validated before any model work starts."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict

TASKS = ("asr", "vsr", "avsr")  # speechllm.models.visual_injection.MODES: audio, lips, both


@dataclasses.dataclass(frozen=True)
class DecodingOptions:
    beam_size: int = 4  # 1 is greedy search
    nbest: int = 1  # hypotheses written per utterance (1best_recog, 2best_recog, ...)
    max_length: int = 0  # hard cap on output tokens; 0: only the ratio below
    max_length_ratio: float = 1.0  # at most ratio x speech embeddings tokens (after the adapter); 0: off
    min_length: int = 0  # EOS forbidden before this many tokens
    length_penalty: float = 1.0  # rank finished hypotheses by logprob / length**penalty; 0: raw logprob
    no_repeat_ngram_size: int = 0  # forbid repeating any n-gram of this size (cuts looping insertions); 0: off
    ctc_weight: float = 0.0  # joint CTC/LLM decoding: score = (1 - w) LLM + w CTC prefix score; 0: LLM alone
    ctc_pre_beam: int = 0  # tokens per beam (best by the weighted full scorers) that CTC scores; 0: 1.5 x beam
    lm: str = ""  # an external causal LM over the speech LLM's tokenizer (folder, .gguf or hub name): shallow fusion
    lm_weight: float = 0.0  # its weight: score += lm_weight x LM log-probability
    lm_fusion: str = "label"  # label: LM scores added per label (same units); delayed: an AM's search adds the LM's
    #                           scores of each completed word, re-tokenised by the LM's own tokenizer (any vocabulary)
    lm_fusion_interval: int = 0  # delayed fusion at every word boundary (0), or every N-th label (the words completed
    #                              since the last fusion point scored together)
    length_bonus: float = 0.0  # score += length_bonus per emitted token (ESPnet's length_bonus)
    prompt: str = ""  # a prompt read before the speech instead of the model's training prompt (model_conf.prompt);
    #                   empty: the training prompt
    task: str = "asr"  # what an audio-visual model recognises from: asr (the audio), vsr (the lips: the audio is
    #                    replaced as in training's modality dropout) or avsr (both); vsr and avsr read the data name
    #                    video (roi.scp); an audio-only model decodes asr only
    end_rule: str = "k_ended"  # k_ended: stop once beam_size hypotheses ended; espnet: ended hypotheses keep their
    #                           beam slots and the search runs to the length limit or an empty beam (ESPnet's rule)

    def __post_init__(self):
        problems = []
        if self.beam_size < 1:
            problems.append(f"beam_size must be >= 1, got {self.beam_size}")
        if not 1 <= self.nbest <= self.beam_size:
            problems.append(f"nbest ({self.nbest}) must be between 1 and beam_size ({self.beam_size})")
        if self.max_length < 0 or self.max_length_ratio < 0 or self.min_length < 0:
            problems.append("max_length, max_length_ratio and min_length must be >= 0")
        if self.max_length == 0 and self.max_length_ratio == 0:
            problems.append("max_length and max_length_ratio are both 0: decoding would never stop; set one")
        if self.max_length and self.min_length >= self.max_length:
            problems.append(f"min_length ({self.min_length}) must be < max_length ({self.max_length})")
        if self.no_repeat_ngram_size < 0:
            problems.append(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            problems.append(f"ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if self.lm_weight < 0 or (self.lm_weight > 0) != bool(self.lm):
            problems.append(f"lm_weight ({self.lm_weight}) must be > 0 exactly when an lm is given ({self.lm!r}), "
                            "and never negative")
        if self.lm_fusion not in ("label", "delayed"):
            problems.append(f"lm_fusion must be label or delayed, got {self.lm_fusion!r}")
        if self.lm_fusion_interval < 0 or (self.lm_fusion_interval and self.lm_fusion != "delayed"):
            problems.append(f"lm_fusion_interval ({self.lm_fusion_interval}) must be >= 0, and > 0 only with "
                            "lm_fusion: delayed")
        if self.end_rule not in ("k_ended", "espnet"):
            problems.append(f"end_rule must be k_ended or espnet, got {self.end_rule!r}")
        if self.task not in TASKS:
            problems.append(f"task must be one of {list(TASKS)}, got {self.task!r}")
        if self.ctc_pre_beam < 0:
            problems.append(f"ctc_pre_beam must be >= 0, got {self.ctc_pre_beam}")
        if problems:
            raise ValueError("decoding options: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, conf: Dict[str, Any], where: str = "decoding config") -> "DecodingOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(conf) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
        return cls(**conf)
