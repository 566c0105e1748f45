"""The combination paradigm's first pass: an ESPnet ASRTask AED + CTC model decoded by our batched search, alone and
fused with an LLM of another vocabulary at word boundaries (delayed fusion). Every total is checked against a full
recompute of its parts: the decoder over the whole hypothesis, torch's ctc_loss, the LM over the whole text."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from speechllm.bin.prepare_tokens import espnet_token_list
from speechllm.decoding.delayed_fusion import DelayedLMScorer
from speechllm.decoding.options import DecodingOptions
from speechllm.decoding.rescoring import lm_logprobs
from speechllm.decoding.scorers import SpeechInput, vocab_tag
from speechllm.decoding.search import BeamSearch
from speechllm.models.espnet_am import ESPnetAM, ESPnetTokenList
from speechllm.models.llm import load_causal_lm, load_tokenizer
from test_model import tokens_dir  # noqa: F401 (fixture: a toy LLM and a 40-piece BPE)


def build_am(tokens_dir: Path, tmp_path: Path, seed: int = 0) -> ESPnetAM:  # noqa: F811
    from espnet2.tasks.asr import ASRTask

    tokens = espnet_token_list(tokens_dir / "ctc_bpe")
    (tmp_path / "tokens.txt").write_text("\n".join(tokens) + "\n")
    argv = ["--output_dir", str(tmp_path / "exp"), "--token_list", str(tmp_path / "tokens.txt"),
            "--token_type", "bpe", "--bpemodel", str(tokens_dir / "ctc_bpe.model"),
            "--frontend_conf", "n_mels=40", "--normalize", "utterance_mvn", "--encoder", "transformer",
            "--encoder_conf", "{output_size: 32, attention_heads: 2, linear_units: 64, num_blocks: 1}",
            "--decoder", "transformer", "--decoder_conf", "{attention_heads: 2, linear_units: 64, num_blocks: 1}",
            "--model_conf", "ctc_weight=0.3"]
    args = ASRTask.get_parser().parse_args(argv)
    torch.manual_seed(seed)
    model = ASRTask.build_model(args)
    for p in model.parameters():  # sharper than the initial near-uniform outputs: beams disagree
        p.data.mul_(3.0)
    return ESPnetAM(model, ESPnetTokenList(tokens, "bpe", str(tokens_dir / "ctc_bpe.model")), args)


def encode(am: ESPnetAM, lengths=(16000, 11000, 7000)) -> SpeechInput:
    torch.manual_seed(1)
    speech = torch.randn(len(lengths), max(lengths))
    with torch.no_grad():
        return am.encode_speech(speech, torch.tensor(lengths))


def decoder_logprob(am: ESPnetAM, memory: torch.Tensor, ids) -> float:
    """log P_decoder(ids + EOS | SOS, memory), one pass without a cache."""
    ys_in = torch.tensor([[am.sos_id, *ids]])
    logits, _ = am.decoder(memory[None], torch.tensor([memory.size(0)]), ys_in, torch.tensor([ys_in.size(1)]))
    targets = torch.tensor([*ids, am.eos_id])
    return torch.log_softmax(logits[0].float(), -1).gather(1, targets[:, None]).sum().item()


def ctc_logprob(am: ESPnetAM, memory: torch.Tensor, ids) -> float:
    """log P_CTC(ids | memory) by torch's ctc_loss."""
    logp = am.model.ctc.log_softmax(memory[None]).transpose(0, 1)
    loss = torch.nn.functional.ctc_loss(logp, torch.tensor([list(ids)]), torch.tensor([memory.size(0)]),
                                        torch.tensor([len(ids)]), blank=0, reduction="sum")
    return -loss.item()


def test_token_list_is_espnets_layout(tokens_dir, tmp_path):  # noqa: F811
    am = build_am(tokens_dir, tmp_path)
    assert am.token_list[0] == "<blank>" and am.token_list[1] == "<unk>" and am.token_list[-1] == "<sos/eos>"
    ids = am.tokenizer.encode("one two three")
    assert am.tokenizer.decode(ids) == "one two three"
    assert 0 not in ids and am.eos_id not in ids


@pytest.mark.parametrize("ctc_weight", [0.0, 0.3, 1.0])
def test_aed_ctc_scores_equal_a_full_recompute(tokens_dir, tmp_path, ctc_weight):  # noqa: F811
    am = build_am(tokens_dir, tmp_path)
    speech = encode(am)
    options = DecodingOptions(beam_size=3, nbest=3, max_length=6, max_length_ratio=0, length_penalty=0,
                              ctc_weight=ctc_weight)
    with torch.no_grad():
        hyps = BeamSearch.for_aed(am, options)(speech)
        checked = 0
        for i, nbest in enumerate(hyps):
            memory = speech.encoded[i, :int(speech.encoded_lengths[i])]
            for hyp in nbest:
                if hyp.logprob == -math.inf:
                    continue
                expected = 0.0
                if ctc_weight < 1:
                    expected += (1 - ctc_weight) * decoder_logprob(am, memory, hyp.token_ids)
                if ctc_weight > 0:
                    expected += ctc_weight * ctc_logprob(am, memory, hyp.token_ids)
                assert hyp.logprob == pytest.approx(expected, abs=2e-3), (i, hyp.token_ids)
                checked += 1
    assert checked >= 6


def test_batched_aed_search_equals_one_utterance_at_a_time(tokens_dir, tmp_path):  # noqa: F811
    am = build_am(tokens_dir, tmp_path)
    speech = encode(am)
    search = BeamSearch.for_aed(am, DecodingOptions(beam_size=4, nbest=2, ctc_weight=0.3, max_length_ratio=0.3))
    beams_advanced = []  # an utterance that has finished leaves the batch: the scorers see fewer beams
    advance = search.scorers["decoder"].advance
    search.scorers["decoder"].advance = lambda rows, tokens: (beams_advanced.append(rows.numel()),
                                                              advance(rows, tokens))
    with torch.no_grad():
        batched = search(speech)
        assert beams_advanced[0] == 12 and beams_advanced[-1] == 4, beams_advanced
        assert beams_advanced == sorted(beams_advanced, reverse=True)
        for i, nbest in enumerate(batched):
            n = int(speech.encoded_lengths[i])
            alone = search(SpeechInput(speech.encoded[i:i + 1, :n], speech.encoded_lengths[i:i + 1],
                                       speech.encoded[i:i + 1, :n], speech.encoded_lengths[i:i + 1]))[0]
            assert [h.token_ids for h in nbest] == [h.token_ids for h in alone]
            assert [h.logprob for h in nbest] == pytest.approx([h.logprob for h in alone], abs=1e-4)


@pytest.mark.parametrize("lm_weight,ctc_weight,interval", [(0.5, 0.0, 0), (1.0, 0.3, 0), (0.7, 0.3, 3)])
def test_delayed_fusion_adds_the_lm_score_of_the_final_words(tokens_dir, tmp_path, lm_weight, ctc_weight,  # noqa
                                                             interval):
    """Over a whole hypothesis the scores added at word boundaries (or every 3rd label) sum to the LM's
    log-probability of its text, computed in one pass with the LM's own tokenizer (another vocabulary than the AM's
    40 pieces)."""
    am = build_am(tokens_dir, tmp_path)
    speech = encode(am)
    tokenizer = load_tokenizer(str(tokens_dir / "llm"))
    lm = load_causal_lm(str(tokens_dir / "llm"), finetune="frozen")
    torch.manual_seed(2)
    for p in lm.parameters():
        p.data.normal_(0, 0.2)
    options = DecodingOptions(beam_size=3, nbest=3, max_length=12, max_length_ratio=0, length_penalty=0,
                              ctc_weight=ctc_weight, lm="toy", lm_weight=lm_weight, lm_fusion="delayed",
                              lm_fusion_interval=interval)
    search = BeamSearch.for_aed(am, options, lm=lm, lm_tokenizer=tokenizer, lm_vocab=vocab_tag(tokenizer))
    assert isinstance(search.scorers["lm"], DelayedLMScorer)
    words_seen = 0
    with torch.no_grad():
        hyps = search(speech)
        for i, nbest in enumerate(hyps):
            memory = speech.encoded[i, :int(speech.encoded_lengths[i])]
            for hyp in nbest:
                text = am.tokenizer.decode(hyp.token_ids)
                expected = (1 - ctc_weight) * decoder_logprob(am, memory, hyp.token_ids)
                if ctc_weight:
                    expected += ctc_weight * ctc_logprob(am, memory, hyp.token_ids)
                expected += lm_weight * lm_logprobs(lm, tokenizer, [text])[0]
                assert hyp.logprob == pytest.approx(expected, abs=2e-3), text
                words_seen += len(text.split())
    assert words_seen >= 6  # the hypotheses had word boundaries to fuse at


def export_bpe_lm(tokens_dir: Path, tmp_path: Path) -> Path:  # noqa: F811
    """An LM over the AM's own 40-piece BPE (speechllm.bin.lm_train --token_type bpe, untrained), exported."""
    import yaml

    from speechllm.bin.export_lm import export
    from speechllm.tasks.causal_lm import CausalLMTask

    args = CausalLMTask.get_parser().parse_args([
        "--output_dir", str(tmp_path / "lm"), "--llm_conf", f"name_or_path={tokens_dir / 'llm'}",
        "--llm_conf", "finetune=frozen", "--token_type", "bpe", "--bpemodel", str(tokens_dir / "ctc_bpe.model")])
    torch.manual_seed(3)
    model = CausalLMTask.build_model(args)
    for p in model.parameters():
        p.data.normal_(0, 0.3)  # an LM with opinions: its scores move the search
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), tmp_path / "lm" / "model.pth")
    return export(str(tmp_path / "lm" / "config.yaml"), str(tmp_path / "lm" / "model.pth"), str(tmp_path / "exported"))


def test_label_wise_fusion_with_an_lm_over_the_ams_bpe(tokens_dir, tmp_path):  # noqa: F811
    """Shallow fusion label by label: an LM trained on the AM's BPE (its ids mapped to the AM's token list) adds
    lm_weight times its log-probability of the hypothesis's pieces and EOS, computed here in one pass."""
    am = build_am(tokens_dir, tmp_path)
    speech = encode(am)
    folder = export_bpe_lm(tokens_dir, tmp_path)
    lm, tokenizer = load_causal_lm(str(folder), finetune="frozen"), load_tokenizer(str(folder))
    options = DecodingOptions(beam_size=3, nbest=3, max_length=6, max_length_ratio=0, length_penalty=0,
                              ctc_weight=0.3, lm="bpe_lm", lm_weight=0.5)
    search = BeamSearch.for_aed(am, options, lm=lm, lm_tokenizer=tokenizer, lm_vocab=vocab_tag(tokenizer))
    checked = 0
    with torch.no_grad():
        for i, nbest in enumerate(search(speech)):
            memory = speech.encoded[i, :int(speech.encoded_lengths[i])]
            for hyp in nbest:
                pieces = [a - 1 for a in hyp.token_ids]  # AM id = piece + 1 (its blank is first)
                ids = [tokenizer.bos_token_id, *pieces, tokenizer.eos_token_id]
                lm_logp = torch.log_softmax(lm(input_ids=torch.tensor([ids[:-1]])).logits[0].float(), -1)
                expected = (0.7 * decoder_logprob(am, memory, hyp.token_ids)
                            + 0.3 * ctc_logprob(am, memory, hyp.token_ids)
                            + 0.5 * lm_logp.gather(1, torch.tensor(ids[1:])[:, None]).sum().item())
                assert hyp.logprob == pytest.approx(expected, abs=2e-3)
                checked += 1
    assert checked >= 6


def test_an_lm_of_other_units_is_refused_label_by_label(tokens_dir, tmp_path):  # noqa: F811
    am = build_am(tokens_dir, tmp_path)
    tokenizer = load_tokenizer(str(tokens_dir / "llm"))
    lm = load_causal_lm(str(tokens_dir / "llm"), finetune="frozen")
    options = DecodingOptions(lm="toy", lm_weight=0.3)  # lm_fusion: label
    with pytest.raises(ValueError, match=r"scorers \['lm'\] score other label units than the proposer 'decoder'"
                                         r".*lm_fusion: delayed"):
        BeamSearch.for_aed(am, options, lm=lm, lm_tokenizer=tokenizer, lm_vocab=vocab_tag(tokenizer))
    with pytest.raises(ValueError, match="lm_fusion must be label or delayed"):
        DecodingOptions(lm="toy", lm_weight=0.3, lm_fusion="every_frame")


def test_an_lm_that_cannot_spell_the_ams_pieces_is_refused(tokens_dir, tmp_path):  # noqa: F811
    from speechllm.bin.prepare_tokens import train_llm_tokenizer

    am = build_am(tokens_dir, tmp_path)
    lm = load_causal_lm(str(tokens_dir / "llm"), finetune="frozen")
    digits_only = train_llm_tokenizer(["one two three", "three two one"] * 5, 30)  # no "f", "p", "s", ...
    with pytest.raises(ValueError, match=r"cannot spell .* of the AM's pieces .*<unk>.*covers the AM's characters"):
        DelayedLMScorer(lm, digits_only, am.token_list, am.vocab, special=am.special_ids)


def test_smollm2_tokenizes_word_by_word_as_the_whole_sentence(shared_dir):
    """Delayed fusion tokenises each completed word alone (with its leading space): for the LLM's score to be that of
    the sentence, the pieces must be the sentence's own tokens."""
    gguf = shared_dir / "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
    if not gguf.is_file():
        pytest.skip(f"{gguf} is not on this machine (the project's shared models)")
    tokenizer = load_tokenizer(str(gguf))
    for sentence in ["the cat sat on the mat", "enter five two stop", "pittsburgh march fifth nineteen ninety",
                     "it's 7 o'clock, isn't it", "r u b o u t"]:
        words = sentence.split()
        pieces = [i for n, w in enumerate(words)
                  for i in tokenizer(w if n == 0 else " " + w, add_special_tokens=False)["input_ids"]]
        assert pieces == tokenizer(sentence, add_special_tokens=False)["input_ids"], sentence


def test_a_padded_batch_encodes_as_each_utterance_alone(tokens_dir, tmp_path):  # noqa: F811
    """ESPnet's STFT reflection padding and its subsampling masks (sliced over the whole padded batch) would make a
    short utterance's encoder output depend on its batch; make_batch_exact (applied by ESPnetAM) removes both."""
    am = build_am(tokens_dir, tmp_path)
    lengths = (16000, 11000, 7003)
    batched = encode(am, lengths)
    torch.manual_seed(1)
    waves = torch.randn(len(lengths), max(lengths))
    with torch.no_grad():
        for i, n in enumerate(lengths):
            alone = am.encode_speech(waves[i:i + 1, :n], torch.tensor([n]))
            frames = int(alone.encoded_lengths[0])
            assert int(batched.encoded_lengths[i]) == frames
            torch.testing.assert_close(batched.encoded[i, :frames], alone.encoded[0], atol=1e-4, rtol=1e-4)


def test_the_espnet_end_rule_finds_espnets_own_best_hypotheses(tokens_dir, tmp_path):  # noqa: F811
    """With ESPnet's end rule (ended hypotheses keep their beam slots), raw log-probability ranking and the same
    weights, our batched search returns what ESPnet's own BatchBeamSearch returns on the same model."""
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.scorers.ctc import CTCPrefixScorer

    am = build_am(tokens_dir, tmp_path, seed=3)
    with torch.no_grad():
        am.decoder.output_layer.bias[am.eos_id] += 8.0  # hypotheses end before the length limit (ESPnet ends
        # a hypothesis at its limit with an unscored EOS; ours scores it)
        am.decoder.output_layer.bias[0] -= 10.0  # as in a trained decoder, the CTC blank is never among its best:
        # ESPnet's pre-beam may spend a slot on it (then dropped), ours forbids it before choosing candidates
    speech = encode(am, (16000, 12000, 9000, 14000))
    espnet = BatchBeamSearch(
        scorers={"decoder": am.decoder, "ctc": CTCPrefixScorer(ctc=am.model.ctc, eos=am.eos_id)},
        weights={"decoder": 0.7, "ctc": 0.3}, beam_size=3, vocab_size=len(am.token_list), sos=am.sos_id,
        eos=am.eos_id, token_list=am.token_list, pre_beam_score_key="full").eval()
    options = DecodingOptions(beam_size=3, ctc_weight=0.3, length_penalty=0.0, max_length_ratio=1.0,
                              end_rule="espnet")
    with torch.no_grad():
        ours = BeamSearch.for_aed(am, options)(speech)
        for i, nbest in enumerate(ours):
            memory = speech.encoded[i, :int(speech.encoded_lengths[i])]
            best = espnet(x=memory, maxlenratio=1.0, minlenratio=0.0)[0]
            theirs = best.yseq[1:-1].tolist()  # without SOS and EOS
            assert nbest[0].token_ids == theirs, i
            assert nbest[0].logprob == pytest.approx(float(best.score), abs=1e-3)


@pytest.mark.parametrize("layer", ["Conv2dSubsampling", "Conv2dSubsampling2", "Conv2dSubsampling6",
                                   "Conv2dSubsampling8"])
def test_subsampling_lengths_alone_match_the_layers_own_masks(layer):
    """batch_exact computes the frames an utterance keeps alone from each layer's mask slicing; the layer itself
    (run on an utterance of n frames alone) must agree."""
    import espnet.nets.pytorch_backend.transformer.subsampling as subsampling

    from speechllm.models.batch_exact import MASK_SLICES, frames_alone

    embed = getattr(subsampling, layer)(40, 16, 0.0).eval()
    for n in range(20, 70, 5):
        with torch.no_grad():
            _, mask = embed(torch.zeros(1, n, 40), torch.ones(1, 1, n, dtype=torch.bool))
        assert frames_alone(MASK_SLICES[layer], n) == int(mask.sum()), n
