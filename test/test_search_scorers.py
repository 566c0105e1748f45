"""The beam search as a composition of scorers: shallow fusion with an external causal LM, a length bonus, and the
refusal of scorers over other label units; each total checked against a full recompute of its parts."""
from __future__ import annotations

import math

import pytest
import torch

from speechllm.decoding.options import DecodingOptions
from speechllm.decoding.scorers import CausalLMScorer, SpeechLLMScorer, vocab_tag
from speechllm.decoding.search import BeamSearch
from speechllm.models.llm import load_causal_lm, load_tokenizer
from speechllm.tasks.speech_llm import SpeechLLMTask
from test_model import logprob_by_full_recompute, make_batch, task_args, tokens_dir  # noqa: F401 (fixture)


def lm_logprob(lm, bos_id: int, token_ids, eos_id: int) -> float:
    """log P_LM(tokens + EOS | BOS), recomputed in one pass without a cache."""
    ids = torch.tensor([[bos_id, *token_ids, eos_id]])
    logits = lm(input_ids=ids[:, :-1]).logits[0]
    return torch.log_softmax(logits.float(), -1).gather(1, ids[0, 1:, None]).sum().item()


@pytest.mark.parametrize("lm_weight,length_bonus", [(0.5, 0.0), (0.3, 1.5)])
def test_shallow_fusion_scores_are_llm_plus_weighted_lm_plus_bonus(tokens_dir, lm_weight, length_bonus):  # noqa
    args = task_args(tokens_dir, "--llm_conf", "finetune=full")
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args).eval()
    tokenizer = load_tokenizer(str(tokens_dir / "llm"))
    torch.manual_seed(1)  # another LM over the same tokenizer: the toy LLM, re-initialised
    lm = load_causal_lm(str(tokens_dir / "llm"), finetune="frozen")
    for p in lm.parameters():
        p.data.normal_(0, 0.2)
    options = DecodingOptions(beam_size=3, nbest=3, max_length=5, max_length_ratio=0, length_penalty=0,
                              lm="toy", lm_weight=lm_weight, length_bonus=length_bonus)
    search = BeamSearch.for_speech_llm(model, options, eos_id=model.eos_id, vocab=vocab_tag(tokenizer), lm=lm,
                                       lm_vocab=vocab_tag(tokenizer), bos_id=tokenizer.bos_token_id)
    assert set(search.scorers) == {"llm", "lm"} | ({"length_bonus"} if length_bonus else set())
    batch = make_batch(args)
    with torch.no_grad():
        speech = model.encode_speech(batch["speech"], batch["speech_lengths"])
        hyps = search(speech)
        prefix, mask = model.speech_prefix(speech.speech_embeds, speech.speech_lengths)
        checked = 0
        for i, nbest in enumerate(hyps):
            unpadded = prefix[i, -int(mask[i].sum()):]
            for hyp in nbest:
                if hyp.logprob == -math.inf:
                    continue
                expected = (logprob_by_full_recompute(unpadded, hyp.token_ids, model)
                            + lm_weight * lm_logprob(lm, tokenizer.bos_token_id, hyp.token_ids, model.eos_id)
                            + length_bonus * len(hyp.token_ids))
                assert hyp.logprob == pytest.approx(expected, abs=2e-3)
                checked += 1
    assert checked >= 3


def test_scorers_of_other_label_units_are_refused(tokens_dir):  # noqa: F811
    model = SpeechLLMTask.build_model(task_args(tokens_dir)).eval()
    lm = load_causal_lm(str(tokens_dir / "llm"), finetune="frozen")
    options = DecodingOptions(lm="other", lm_weight=0.5)
    with pytest.raises(ValueError,
                       match=r"scorers \['lm'\] score other label units than the proposer 'llm'.*lm_fusion: delayed"):
        BeamSearch.for_speech_llm(model, options, eos_id=model.eos_id, vocab="llm-bpe", lm=lm, lm_vocab="5k-bpe")
    with pytest.raises(ValueError, match="needs a full scorer named 'llm' to propose"):
        BeamSearch({"lm": CausalLMScorer(lm, 1, "x")}, {"lm": 1.0}, DecodingOptions(), eos_id=model.eos_id)
    with pytest.raises(ValueError, match=r"scorers \['lm'\] have no weight"):
        BeamSearch({"llm": SpeechLLMScorer(model, "x"), "lm": CausalLMScorer(lm, 1, "x")}, {"llm": 1.0},
                   DecodingOptions(), eos_id=model.eos_id)
    with pytest.raises(ValueError, match="lm_weight .* must be > 0 exactly when an lm is given"):
        DecodingOptions(lm_weight=0.3)


def test_vocab_tag_tells_tokenizers_apart(tokens_dir):  # noqa: F811
    from speechllm.bin.prepare_tokens import train_llm_tokenizer

    tokenizer = load_tokenizer(str(tokens_dir / "llm"))
    assert vocab_tag(tokenizer) == vocab_tag(load_tokenizer(str(tokens_dir / "llm")))
    other = train_llm_tokenizer(["completely different words here", "and more of them"] * 5, 48)
    assert vocab_tag(other) != vocab_tag(tokenizer)
