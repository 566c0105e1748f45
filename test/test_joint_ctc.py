"""CTC over the LLM's tokens: CTC compression of the speech prefix, the matching loss, and joint CTC/LLM decoding
(whose CTC prefix scores are checked against brute force and against torch's own CTC loss)."""
import itertools
import math
import random

import pytest
import torch
import torch.nn.functional as F
import yaml

from speechllm.decoding.ctc_prefix import CTCPrefixScorer
from speechllm.decoding.options import DecodingOptions
from speechllm.decoding.search import BeamSearch
from speechllm.models.ctc_compress import ctc_compress
from speechllm.models.matching import matching_loss
from speechllm.tasks.speech_llm import SpeechLLMTask
from test_model import logprob_by_full_recompute, make_batch, task_args, tokens_dir  # noqa: F401 (fixture)


def collapse(path):
    out, previous = [], None
    for label in path:
        if label != 0 and label != previous:
            out.append(label)
        previous = label
    return tuple(out)


def brute_force(logprobs, length, prefix, exact):
    """log P(CTC output starts with / equals ``prefix``) by summing over every frame alignment."""
    def matches(output):
        return output == prefix if exact else output[:len(prefix)] == prefix

    scores = [sum(float(logprobs[t, label]) for t, label in enumerate(path))
              for path in itertools.product(range(logprobs.size(-1)), repeat=length) if matches(collapse(path))]
    return torch.logsumexp(torch.tensor(scores), 0).item() if scores else -math.inf


@pytest.mark.parametrize("prefix", [(2,), (2, 2), (2, 3), (1, 2, 1)])
def test_ctc_prefix_scores_equal_brute_force(prefix):
    torch.manual_seed(0)
    logprobs = torch.randn(2, 5, 4).log_softmax(-1)
    lengths = torch.tensor([5, 3])  # the second utterance is padded: its last frames must not count
    scorer = CTCPrefixScorer(logprobs, lengths, beams_per_utterance=1)
    state = scorer.initial_state()
    for token in prefix:
        candidates = torch.tensor([[token, 3], [token, 3]])  # a second candidate scored alongside
        psi, r_nonblank, r_blank = scorer.extend(state, candidates)
        state = scorer.advance(state, torch.arange(2), torch.zeros(2, dtype=torch.long), candidates, psi,
                               r_nonblank, r_blank)
    for b in range(2):
        length = int(lengths[b])
        assert float(state.psi[b]) == pytest.approx(brute_force(logprobs[b], length, prefix, False), abs=1e-4)
        assert float(scorer.final_scores(state)[b]) == pytest.approx(
            brute_force(logprobs[b], length, prefix, True), abs=1e-4)


def test_ctc_compress_averages_runs_and_keeps_silent_utterances():
    frames = torch.arange(8.0)[None, :, None].repeat(2, 1, 2)
    labels = torch.tensor([[0, 3, 3, 0, 3, 5, 5, 0], [0, 0, 0, 0, 0, 0, 0, 0]])
    compressed, lengths = ctc_compress(frames, torch.tensor([8, 4]), labels)
    assert lengths.tolist() == [3, 1]
    # "3 3 | <b> | 3 | 5 5": the blank separates two 3s (two tokens); frames 4 and 5 differ in label.
    assert compressed[0, :, 0].tolist() == [1.5, 4.0, 5.5]
    assert compressed[1, 0, 0].item() == 1.5  # all blank: the mean of its 4 valid frames, not of the padding


def test_matching_loss_moves_speech_only_and_can_be_minimised():
    torch.manual_seed(0)
    text = torch.randn(2, 4, 16, requires_grad=True)
    speech = torch.nn.Parameter(torch.randn(2, 7, 16))
    lengths = torch.tensor([7, 5]), torch.tensor([4, 2])
    loss = matching_loss(speech, lengths[0], text, lengths[1])
    assert loss.shape == (2,)
    loss.sum().backward()
    assert text.grad is None and speech.grad.abs().sum() > 0  # the text embeddings are only the target
    assert speech.grad[1, 5:].abs().sum() == 0  # padding frames get nothing
    optimizer = torch.optim.Adam([speech], lr=0.1)
    first = loss.sum().item()
    for _ in range(100):
        optimizer.zero_grad()
        loss = matching_loss(speech, lengths[0], text, lengths[1]).sum()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first


def test_llm_vocab_ctc_with_compression_and_matching_trains(tokens_dir):  # noqa: F811
    args = task_args(tokens_dir, "--llm_conf", "finetune=full", "--model_conf", "ctc_compress=true",
                     "--model_conf", "matching_weight=0.5", ctc_token_type="llm")
    model = SpeechLLMTask.build_model(args)
    assert model.ctc_shares_llm_vocab and model.ctc.ctc_lo.out_features == model.llm.config.vocab_size + 1
    batch = make_batch(args)
    # CTC ids are the LLM's ids shifted past the blank.
    first = int(batch["text_lengths"][0])
    assert (batch["text_ctc"][0, :first] == batch["text"][0, :first] + 1).all()
    loss, stats, _ = model(**batch)
    assert {"loss_matching", "loss_ctc", "loss_llm"} <= set(stats)
    loss.backward()
    assert model.adapter.conv.weight.grad.abs().sum() > 0 and model.encoder.encoders[0].feed_forward.w_1.weight.grad \
        .abs().sum() > 0


def test_ctc_head_on_the_llm_embeddings_trains_the_adapter_towards_the_token_embeddings(tokens_dir):  # noqa: F811
    # No downsampling in the adapter: enough speech embeddings for CTC to align the transcripts (else its loss is 0).
    args = task_args(tokens_dir, "--llm_conf", "finetune=frozen", "--model_conf", "ctc_head=llm_embeddings",
                     "--speech_adapter_conf", "downsample=1", ctc_token_type="llm")
    model = SpeechLLMTask.build_model(args)
    embeddings = model.llm.get_input_embeddings().weight
    # No output matrix of its own: a blank vector and a scale; token logits are dot products with the LLM's.
    assert sum(p.numel() for p in model.ctc.parameters()) == embeddings.size(1) + 1
    hidden = torch.randn(2, 5, embeddings.size(1))
    logits = model.ctc.logits(hidden)
    assert logits.shape == (2, 5, embeddings.size(0) + 1)
    torch.testing.assert_close(logits[..., 1:], hidden @ embeddings.T * model.ctc.log_scale.exp())
    batch = make_batch(args)
    loss, stats, _ = model(**batch)
    assert "loss_ctc" in stats and torch.isfinite(stats["loss_ctc"]) and stats["loss_ctc"] > 0
    # The CTC loss alone reaches the adapter (through the speech embeddings), not the frozen LLM.
    model.zero_grad()
    encoded, lengths = model.encode(batch["speech"], batch["speech_lengths"])
    speech_embeds, speech_lengths = model.speech_embeddings(encoded, lengths)
    model.ctc(speech_embeds, speech_lengths, batch["text_ctc"], batch["text_ctc_lengths"]).backward()
    assert model.adapter.conv.weight.grad.abs().sum() > 0 and model.ctc.blank.grad.abs().sum() > 0
    assert embeddings.grad is None


def test_toy_llm_taught_to_read_ctc_paths_lends_its_blank_token_to_the_ctc_head(tmp_path):
    from test_model import SENTENCES, TOY

    from speechllm.bin.prepare_tokens import BLANK_TOKEN, ctc_path, make_toy_llm
    from speechllm.models.llm import load_tokenizer

    (tmp_path / "toy.yaml").write_text(yaml.safe_dump({**TOY, "pretrain_steps": 4, "pretrain_ctc_paths": 0.5}))
    make_toy_llm(tmp_path / "toy.yaml", SENTENCES, tmp_path / "llm")
    tokenizer = load_tokenizer(str(tmp_path / "llm"))
    blank = tokenizer.convert_tokens_to_ids(BLANK_TOKEN)
    assert blank == 4 and tokenizer(BLANK_TOKEN, add_special_tokens=False)["input_ids"] == [blank]
    path = ctc_path([10, 11, 11], blank, len(tokenizer), random.Random(0), noise=0.0)
    collapsed = [t for i, t in enumerate(path) if t != blank and (i == 0 or t != path[i - 1])]
    assert collapsed == [10, 11, 11] or collapsed == [10, 11]  # repeats of 11 merge unless a blank parts them
    assert [t for t in path if t != blank][:1] == [10] and set(path) <= {10, 11, blank}
    args = task_args(tmp_path, "--llm_conf", "finetune=full", "--model_conf", "ctc_head=llm_embeddings",
                     "--model_conf", f"ctc_blank_token={BLANK_TOKEN}", ctc_token_type="llm")
    model = SpeechLLMTask.build_model(args)
    assert model.ctc.blank is None and sum(p.numel() for p in model.ctc.parameters()) == 1
    hidden = torch.randn(1, 3, TOY["hidden_size"])
    embeddings = model.llm.get_input_embeddings().weight
    logits = model.ctc.logits(hidden)
    torch.testing.assert_close(logits[..., 0], (hidden @ embeddings[blank]) * model.ctc.log_scale.exp())
    assert (logits[..., blank + 1] == torch.finfo(logits.dtype).min).all()  # never a label


@pytest.mark.parametrize("extra,message", [
    (("--ctc_token_type", "llm"), "drop one of them"),
    (("--model_conf", "ctc_compress=true", "--model_conf", "ctc_weight=0"), "ctc_compress needs a trained CTC"),
    (("--model_conf", "ctc_head=llm_embeddings"), "ctc_head llm_embeddings scores the LLM's own tokens"),
    (("--model_conf", "ctc_head=decoder"), "model_conf.ctc_head: 'decoder' is not one of"),
    (("--model_conf", "ctc_blank_token=<blank>"), "ctc_blank_token applies to ctc_head llm_embeddings only"),
])
def test_ctc_conflicts_are_named(tokens_dir, extra, message):  # noqa: F811
    with pytest.raises(ValueError, match=message):
        SpeechLLMTask.build_model(task_args(tokens_dir, *extra))


def ctc_logprob(model, encoded, length, token_ids):
    """log P_CTC(token_ids | speech) from torch's own CTC loss (CTC id = LLM id + 1)."""
    logprobs = model.ctc.log_softmax(encoded)[:, :length].transpose(0, 1)
    target = torch.tensor([[i + 1 for i in token_ids]])
    return -F.ctc_loss(logprobs, target, torch.tensor([length]), torch.tensor([len(token_ids)]),
                       reduction="sum", zero_infinity=False).item()


@pytest.mark.parametrize("weight,head", [(0.3, "encoder"), (1.0, "encoder"), (0.3, "llm_embeddings"),
                                         (1.0, "llm_embeddings")])
def test_joint_decoding_scores_are_llm_plus_ctc_sequence_logprobs(tokens_dir, weight, head):  # noqa: F811
    """The CTC prefix increments of a finished hypothesis telescope to the CTC log-likelihood of the whole
    sequence, so each hypothesis must score (1 - w) log P_LLM + w log P_CTC, computed here independently."""
    args = task_args(tokens_dir, "--llm_conf", "finetune=full", "--model_conf", f"ctc_head={head}",
                     ctc_token_type="llm")
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args).eval()
    batch = make_batch(args)
    options = DecodingOptions(beam_size=3, nbest=3, max_length=6, max_length_ratio=0, length_penalty=0,
                              ctc_weight=weight, ctc_pre_beam=8)
    hyps = BeamSearch.for_speech_llm(model, options, eos_id=model.eos_id)(
        model.encode_speech(batch["speech"], batch["speech_lengths"]))
    with torch.no_grad():
        encoded, encoded_lengths = model.encode(batch["speech"], batch["speech_lengths"])
        speech_embeds, speech_lengths = model.speech_embeddings(encoded, encoded_lengths)
        prefix, mask = model.speech_prefix(speech_embeds, speech_lengths)
        ctc_in, ctc_lengths = model.ctc_input(encoded, encoded_lengths, speech_embeds, speech_lengths)
        assert (ctc_in is speech_embeds) == (head == "llm_embeddings")
        checked = 0
        for i, nbest in enumerate(hyps):
            unpadded = prefix[i, -int(mask[i].sum()):]
            for hyp in nbest:
                if hyp.logprob == -math.inf:
                    continue
                llm = logprob_by_full_recompute(unpadded, hyp.token_ids, model)
                ctc = ctc_logprob(model, ctc_in[i:i + 1], int(ctc_lengths[i]), hyp.token_ids)
                assert hyp.logprob == pytest.approx((1 - weight) * llm + weight * ctc, abs=2e-3)
                checked += 1
    assert checked >= 3


def test_joint_decoding_needs_ctc_over_the_llm_tokens(tokens_dir):  # noqa: F811
    model = SpeechLLMTask.build_model(task_args(tokens_dir)).eval()  # CTC over its own BPE
    with pytest.raises(ValueError, match="ctc_token_type: llm"):
        BeamSearch.for_speech_llm(model, DecodingOptions(ctc_weight=0.5), eos_id=model.eos_id)
    with pytest.raises(ValueError, match="ctc_weight must be in"):
        DecodingOptions(ctc_weight=1.5)
