"""The speech LLM task and model: building from config, forward/backward, what trains, decoding with a KV cache."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from speechllm.bin.prepare_tokens import make_toy_llm, train_bpe
from speechllm.decoding.options import DecodingOptions
from speechllm.decoding.search import BeamSearch, NoRepeatNGram
from speechllm.models.llm import load_causal_lm, load_tokenizer, token_ids, trainable_parameter_count
from speechllm.tasks.speech_llm import SpeechLLMTask

SENTENCES = ["one two three four five", "p i t t s b u r g h", "march fifth nineteen ninety",
             "enter five stop yes no", "zero six seven eight nine", "erase rubout repeat"] * 20
TOY = dict(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2)


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tokens")
    (root / "toy.yaml").write_text(yaml.safe_dump(TOY))
    make_toy_llm(root / "toy.yaml", SENTENCES, root / "llm")
    train_bpe(SENTENCES, root / "ctc_bpe", 40)
    return root


def task_args(tokens_dir: Path, *extra: str, ctc_token_type: str = "bpe"):
    ctc = (["--ctc_bpemodel", str(tokens_dir / "ctc_bpe.model")] if ctc_token_type == "bpe"
           else ["--ctc_token_type", ctc_token_type])
    argv = ["--output_dir", "unused", "--llm_conf", f"name_or_path={tokens_dir / 'llm'}",
            *ctc, "--model_conf", "ctc_weight=0.3",
            "--frontend_conf", "n_mels=40", "--encoder", "transformer",
            "--encoder_conf", "{output_size: 32, attention_heads: 2, linear_units: 64, num_blocks: 1}",
            "--speech_adapter_conf", "hidden_size=32", *extra]
    return SpeechLLMTask.get_parser().parse_args(argv)


def make_batch(args, lengths=(16000, 12000, 8000), texts=None):
    preprocess = SpeechLLMTask.build_preprocess_fn(args, train=True)
    collate = SpeechLLMTask.build_collate_fn(args, train=True)
    rng = np.random.default_rng(0)
    texts = texts or SENTENCES[: len(lengths)]
    items = [(f"u{i}", preprocess(f"u{i}", {"speech": rng.standard_normal(n).astype(np.float32), "text": t}))
             for i, (n, t) in enumerate(zip(lengths, texts))]
    return collate(items)[1]


def test_forward_backward_lora(tokens_dir):
    args = task_args(tokens_dir, "--llm_conf", "finetune=lora", "--llm_conf", "lora_conf={r: 4, alpha: 8}")
    model = SpeechLLMTask.build_model(args)
    # LoRA on q_proj and v_proj: r * (in + out) per projection and layer.
    head_dim = TOY["hidden_size"] // TOY["num_attention_heads"]
    per_layer = 4 * (TOY["hidden_size"] * 2) + 4 * (TOY["hidden_size"] + TOY["num_key_value_heads"] * head_dim)
    assert trainable_parameter_count(model.llm) == TOY["num_hidden_layers"] * per_layer
    batch = make_batch(args, texts=["one two", "p i t t", ""])  # an empty transcript (non-speech) is allowed
    loss, stats, weight = model(**batch)
    assert torch.isfinite(loss) and set(stats) >= {"loss", "loss_llm", "loss_ctc", "acc"}
    assert int(weight) == 3
    loss.sum().backward()
    for name, p in model.named_parameters():
        if "lora_A" in name:  # LoRA's B starts at zero, so A's first gradient is zero too, but it exists
            assert p.grad is not None, name
        elif "lora_B" in name or name.startswith(("encoder.", "adapter.", "ctc.")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        elif name.startswith("llm."):
            assert not p.requires_grad and p.grad is None, name


def test_frozen_and_full_llm(tokens_dir):
    frozen = SpeechLLMTask.build_model(task_args(tokens_dir, "--llm_conf", "finetune=frozen"))
    assert trainable_parameter_count(frozen.llm) == 0
    assert trainable_parameter_count(frozen.adapter) > 0
    full = SpeechLLMTask.build_model(task_args(tokens_dir, "--llm_conf", "finetune=full"))
    assert trainable_parameter_count(full.llm) == sum(p.numel() for p in full.llm.parameters())


def test_targets_are_the_text_and_eos_only(tokens_dir):
    """The prompt and the speech are never targets: what is scored is the text followed by EOS."""
    args = task_args(tokens_dir, "--model_conf", "prompt='Transcribe the audio.'")
    model = SpeechLLMTask.build_model(args).eval()
    batch = make_batch(args, lengths=(8000,), texts=["one"])
    targets = model.targets_with_eos(batch["text"], batch["text_lengths"])
    assert targets.tolist()[0][-1] == model.eos_id and (targets != -1).sum() == batch["text_lengths"][0] + 1


@pytest.mark.parametrize("key,value,message", [
    ("--encoder_conf", "num_blockz=2", "encoder_conf: unknown key(s) ['num_blockz']"),
    ("--llm_conf", "finetun=lora", "llm_conf: unknown key(s) ['finetun']"),
    ("--llm_conf", "lora_conf={rank: 3}", "llm_conf.lora_conf: unknown key(s) ['rank']"),
    ("--llm_conf", "lora_conf={target_modules: [qq_proj]}", "target_modules: ['qq_proj'] not found"),
    ("--model_conf", "ctc_wieght=0.1", "model_conf: unknown key(s) ['ctc_wieght']"),
    ("--llm_conf", "name_or_path=/nonexistent/llm", "is not a local folder or GGUF file"),
    # A value of the wrong type is named with the type its default has, before anything is built.
    ("--model_conf", "ctc_weight=half", "model_conf.ctc_weight: expected a number (float, e.g. 0.0), got 'half'"),
    ("--llm_conf", "finetune=3", "llm_conf.finetune: expected a string (str, e.g. 'lora'), got 3 (int)"),
    ("--model_conf", "ctc_compress=yes please", "model_conf.ctc_compress: expected a boolean"),
    ("--llm_conf", "lora_conf=[r, 4]", "llm_conf.lora_conf: expected a mapping"),
    ("--model_conf", "interface=crossattention", "model_conf.interface: 'crossattention' is not one of"),
    ("--model_conf", "cross_attention_conf={every: 2}", "applies to interface cross_attention only"),
    ("--model_conf", "speech_positions=aligned", "needs the prefix interface and a CTC head on the encoder over the LLM's tokens"),
    ("--model_conf", "speech_positions=stretched", "model_conf.speech_positions: 'stretched' is not one of"),
])
def test_bad_config_names_the_key(tokens_dir, key, value, message):
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        SpeechLLMTask.build_model(task_args(tokens_dir, key, value))
    assert message in str(error.value)


def test_llm_folder_of_another_kind_is_named(tokens_dir, tmp_path):
    from transformers import WhisperConfig

    WhisperConfig(d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                  vocab_size=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                  decoder_start_token_id=1).save_pretrained(tmp_path / "whisper")
    with pytest.raises(ValueError, match="is a 'whisper' model, not a decoder-only LLM .* speech encoder's folder"):
        load_causal_lm(str(tmp_path / "whisper"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="'.*empty' has no config.json"):
        load_causal_lm(str(tmp_path / "empty"))


def test_prompt_or_utterance_longer_than_the_llm_context_is_explained(tokens_dir):
    long_prompt = " ".join(["one two three four five"] * 120)
    with pytest.raises(ValueError, match="model_conf.prompt and prompt_suffix take .* tokens, half or more of the "
                                         "LLM's context of 1024 positions"):
        SpeechLLMTask.build_model(task_args(tokens_dir, "--model_conf", f"prompt='{long_prompt}'"))
    args = task_args(tokens_dir)
    model = SpeechLLMTask.build_model(args)
    model.max_positions = 20  # as if the LLM's context were short: a 1 s utterance and its text do not fit
    with pytest.raises(ValueError, match=r"an utterance needs \d+ LLM positions .* more than the LLM's context of 20: "
                                         r"leave out long utterances \(run.sh --max_duration\)"):
        model(**make_batch(args, lengths=(16000,), texts=["one two three"]))


def test_registry_typo_is_rejected(tokens_dir, capsys):
    with pytest.raises(SystemExit):
        task_args(tokens_dir, "--encoder", "conformr")
    assert "invalid choice: 'conformr'" in capsys.readouterr().err


def test_unknown_key_in_yaml_config(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("encoderr: conformer\n")
    with pytest.raises(SystemExit):
        SpeechLLMTask.get_parser().parse_args(["--config", str(config), "--output_dir", "x"])
    assert f"encoderr (from {config})" in capsys.readouterr().err


def logprob_by_full_recompute(prefix, token_ids, model, memory=None, prefix_positions=None):
    """Log-probability of ``token_ids`` + EOS after an unpadded speech prefix, recomputing everything (no cache);
    ``memory``: the utterance's speech for the cross-attention interface; ``prefix_positions``: ``(prefix
    positions, text start)`` for aligned speech positions."""
    targets = torch.tensor(list(token_ids) + [model.eos_id])
    embeds = torch.cat([prefix[None], model.embed_tokens(targets[None, :-1])], dim=1)
    positions = None
    if prefix_positions is not None:
        before, start = prefix_positions
        positions = torch.cat([before, start + torch.arange(targets.size(0) - 1)])[None]
    logits = model.run_llm(embeds, torch.ones(1, embeds.size(1), dtype=torch.long), memory=memory,
                           position_ids=positions).logits[0, prefix.size(0) - 1:]
    return torch.log_softmax(logits.float(), -1).gather(1, targets[:, None]).sum().item()


CROSS_ATTENTION = ("--model_conf", "interface=cross_attention",
                   "--model_conf", "cross_attention_conf={num_heads: 4, ffn_size: 32}")


def open_gates(model):
    """Trained-like cross-attention: gates away from their initial 0, so the speech changes the scores."""
    with torch.no_grad():
        for block in model.cross_attention.blocks:
            block.attention_gate.fill_(0.7)
            block.ffn_gate.fill_(-0.4)


ALIGNED = ("--model_conf", "speech_positions=aligned", "--model_conf", "prompt_suffix=<s>")


@pytest.mark.parametrize("beam_size,interface", [(1, "prefix"), (3, "prefix"), (3, "cross_attention"),
                                                 (3, "aligned")])
def test_cached_batched_search_scores_match_full_recompute(tokens_dir, beam_size, interface):
    """The search's KV cache, left padding, positions and beam reordering (and, with cross-attention, the speech's
    keys and values projected once and expanded to the beams; with aligned speech positions, the fractional
    positions from the CTC head's length) give exactly the log-probabilities of a plain full recomputation of each
    utterance alone."""
    extra = {"cross_attention": CROSS_ATTENTION, "aligned": ALIGNED}.get(interface, ())
    args = task_args(tokens_dir, "--llm_conf", "finetune=full", *extra, ctc_token_type="llm")
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args).eval()
    if interface == "cross_attention":
        open_gates(model)
    batch = make_batch(args)
    options = DecodingOptions(beam_size=beam_size, nbest=beam_size, max_length=6, max_length_ratio=0,
                              length_penalty=0)
    hyps = BeamSearch.for_speech_llm(model, options, eos_id=model.eos_id)(
        model.encode_speech(batch["speech"], batch["speech_lengths"]))
    with torch.no_grad():
        speech_embeds, speech_lengths = model.speech_embeddings(*model.encode(batch["speech"], batch["speech_lengths"]))
        prefix, mask = model.speech_prefix(speech_embeds, speech_lengths)
        for i, nbest in enumerate(hyps):
            unpadded = prefix[i, -int(mask[i].sum()):]
            n = int(speech_lengths[i])
            memory = model.speech_memory(speech_embeds[i:i + 1, :n], speech_lengths[i:i + 1])
            positions = None
            if interface == "aligned":
                alone = model.encode_speech(batch["speech"][i:i + 1, :int(batch["speech_lengths"][i])],
                                            batch["speech_lengths"][i:i + 1])
                before, start = model.prefix_positions(torch.ones(1, unpadded.size(0), dtype=torch.long),
                                                       speech_lengths[i:i + 1], alone.heard_lengths)
                positions = before[0], start[0]
            for hyp in nbest:
                expected = logprob_by_full_recompute(unpadded, hyp.token_ids, model, memory, positions)
                assert hyp.logprob == pytest.approx(expected, abs=1e-3, rel=1e-4)


def test_aligned_speech_positions_put_each_tokens_speech_at_one_relative_distance(tokens_dir):
    """speech_positions aligned: [BOS] keeps position 0 and the suffix 1, the speech frames spread evenly over the
    positions of the tokens they say (fractional), the text counts on from the suffix as if the speech were not
    there; left padding is ignored. The query predicting token k (the suffix for k = 0, then text input k - 1) and
    the middle of token k's share of the speech are 0.5 apart in every utterance."""
    model = SpeechLLMTask.build_model(task_args(tokens_dir, *ALIGNED, ctc_token_type="llm"))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]])  # BOS, 4 or 6 frames, suffix
    positions, start = model.prefix_positions(mask, torch.tensor([4, 6]), torch.tensor([2, 3]))
    assert positions[0].tolist() == [0, 0, 0, 1.25, 1.75, 2.25, 2.75, 1]
    assert positions[1].tolist() == [0, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 1]
    assert start.tolist() == [2, 2]
    for row, frames, tokens in ((0, 4, 2), (1, 6, 3)):
        per_token = frames // tokens
        first_frame = 7 - frames
        for k in range(tokens):
            query = float(start[row]) - 1 + k
            speech = positions[row, first_frame + k * per_token: first_frame + (k + 1) * per_token].mean()
            assert float(speech) - query == pytest.approx(0.5)
    # Training spreads the speech too: the loss differs from the sequential model's with the same weights.
    sequential = SpeechLLMTask.build_model(task_args(tokens_dir, "--model_conf", "prompt_suffix=<s>",
                                                     ctc_token_type="llm"))
    sequential.load_state_dict(model.state_dict())
    batch = make_batch(task_args(tokens_dir, ctc_token_type="llm"))
    torch.manual_seed(0)
    aligned_loss = model.eval()(**batch)[1]["loss_llm"]
    assert not torch.allclose(aligned_loss, sequential.eval()(**batch)[1]["loss_llm"])
    with pytest.raises(ValueError, match="set model_conf.prompt_suffix"):
        SpeechLLMTask.build_model(task_args(tokens_dir, "--model_conf", "speech_positions=aligned",
                                            ctc_token_type="llm"))


def posterior_args(tokens_dir, ctc_token_type="llm", **adapter_conf):
    args = task_args(tokens_dir, "--llm_conf", "finetune=full", "--speech_adapter", "ctc_posterior",
                     ctc_token_type=ctc_token_type)
    args.speech_adapter_conf = adapter_conf  # in place of task_args' conv1d_mlp options
    return args


def test_ctc_posterior_adapter_reads_the_ctc_heads_soft_transcript_in_the_llms_embeddings(tokens_dir):
    """LegoSLM's adapter: each speech embedding is the CTC posteriors (at the temperature) times [blank; the LLM's
    token embeddings], not layer-normalised. The LLM's loss trains the CTC head through it only with detach false."""
    args = posterior_args(tokens_dir, temperature=2.0)
    model = SpeechLLMTask.build_model(args)
    assert model.speech_norm is None
    batch = make_batch(args)
    encoded, lengths = model.encode(batch["speech"], batch["speech_lengths"])
    embeds, embed_lengths = model.speech_embeddings(encoded, lengths)
    assert embed_lengths.tolist() == lengths.tolist()
    probs = torch.softmax(model.ctc.log_softmax(encoded) / 2.0, dim=-1)
    table = torch.cat([model.adapter.blank[None], model.llm.get_input_embeddings().weight[: probs.size(-1) - 1]])
    n = int(lengths[1])
    assert torch.allclose(embeds[1, :n], probs[1, :n] @ table, atol=1e-6)
    assert embeds[1, n:].abs().sum() == 0  # padding frames stay zero
    for detach in (True, False):
        model = SpeechLLMTask.build_model(posterior_args(tokens_dir, detach=detach))
        model.ctc_weight = 0.0  # the LLM's loss only
        model(**batch)[0].backward()
        assert model.adapter.blank.grad.abs().sum() > 0
        assert (model.ctc.ctc_lo.weight.grad is None) == detach
    with pytest.raises(ValueError, match="set ctc_token_type: llm"):
        SpeechLLMTask.build_model(posterior_args(tokens_dir, ctc_token_type="bpe"))  # a CTC BPE of its own


def test_cross_attention_interface_trains_only_its_blocks_and_starts_as_the_llm(tokens_dir):
    """Cross-attention: the prefix is the prompt alone; closed gates leave the LLM's output exactly as without speech;
    a frozen LLM gets no gradient while the blocks and the adapter do; the speech changes the scores once the gates
    open; the blocks' parameters are counted and saved in checkpoints."""
    args = task_args(tokens_dir, "--llm_conf", "finetune=frozen", *CROSS_ATTENTION,
                     "--model_conf", "cross_attention_conf={every: 2, num_heads: 4, ffn_size: 32}")
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args)
    assert model.cross_attention.layers == [0] and len(model.cross_attention.blocks) == 1
    batch = make_batch(args)
    speech_embeds, speech_lengths = model.speech_embeddings(*model.encode(batch["speech"], batch["speech_lengths"]))
    prefix, mask = model.speech_prefix(speech_embeds, speech_lengths)
    assert prefix.size(1) == len(model.prompt_ids) + len(model.prompt_suffix_ids) and bool(mask.all())
    memory = model.speech_memory(speech_embeds, speech_lengths)
    with torch.no_grad():
        closed = model.run_llm(prefix, mask, memory=memory).logits
        plain = load_causal_lm(str(tokens_dir / "llm"), finetune="frozen")(inputs_embeds=prefix,
                                                                            attention_mask=mask).logits
    assert torch.equal(closed, plain)
    loss, _, _ = model(**batch)
    loss.backward()
    assert all(p.grad is None for p in model.llm.parameters())
    assert model.cross_attention.blocks[0].attention_gate.grad.abs() > 0
    open_gates(model)
    model.zero_grad()
    model(**batch)[0].backward()
    assert model.adapter.parameters().__next__().grad.abs().sum() > 0
    with torch.no_grad():
        other = model.speech_memory(speech_embeds.flip(0), speech_lengths.flip(0))
        assert not torch.allclose(model.run_llm(prefix, mask, memory=memory).logits,
                                  model.run_llm(prefix, mask, memory=other).logits)
    summary = {part: trainable for part, trainable, _ in model.trainable_summary()}
    assert summary["cross_attention"] == sum(p.numel() for p in model.cross_attention.parameters()) > 0
    assert summary["llm"] == 0
    assert any(k.startswith("cross_attention.blocks.0.") for k in model.state_dict())


@pytest.mark.parametrize("gate_init", [0.0, 0.1])
def test_closed_gates_give_query_and_key_no_gradient_and_gate_init_opens_them(tokens_dir, gate_init):
    """At gate 0 the blocks' attention (query, key) gets no gradient, which under Adam's coupled weight decay lets
    those weights decay to zero (the demo's cross-attention run); gate_init starts the gates open instead."""
    args = task_args(tokens_dir, *CROSS_ATTENTION,
                     "--model_conf", f"cross_attention_conf={{num_heads: 4, gate_init: {gate_init}}}")
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args)
    block = model.cross_attention.blocks[0]
    assert float(block.attention_gate) == pytest.approx(gate_init)
    model(**make_batch(args))[0].backward()
    attention_grad = block.query.weight.grad.abs().sum() + block.key.weight.grad.abs().sum()
    assert (attention_grad > 0) == (gate_init != 0)
    assert block.attention_gate.grad.abs() > 0


def test_beam_search_nbest_is_sorted_and_bounded(tokens_dir):
    args = task_args(tokens_dir)
    model = SpeechLLMTask.build_model(args).eval()
    batch = make_batch(args, lengths=(12000, 6000))
    options = DecodingOptions(beam_size=3, nbest=3, max_length=5, max_length_ratio=0, length_penalty=0)
    hyps = BeamSearch.for_speech_llm(model, options, eos_id=model.eos_id)(
        model.encode_speech(batch["speech"], batch["speech_lengths"]))
    for nbest in hyps:
        assert 1 <= len(nbest) <= 3
        assert all(len(h.token_ids) <= 5 for h in nbest)
        scores = [h.score for h in nbest]
        assert scores == sorted(scores, reverse=True)
    greedy = BeamSearch.for_speech_llm(model, DecodingOptions(beam_size=1, max_length=5, max_length_ratio=0,
                                                              length_penalty=0), eos_id=model.eos_id)(
        model.encode_speech(batch["speech"], batch["speech_lengths"]))
    # A wider beam never finds a worse best hypothesis than greedy under the same (raw log-prob) score.
    for wide, narrow in zip(hyps, greedy):
        assert wide[0].logprob >= narrow[0].logprob - 1e-4


def test_no_repeat_ngram_filter():
    logprobs = torch.zeros(1, 10)
    NoRepeatNGram(2).apply(logprobs, torch.tensor([[3, 4, 5, 3]]), step=4)
    assert logprobs[0, 4] == -float("inf") and torch.isfinite(logprobs[0, [0, 1, 2, 3, 5]]).all()


@pytest.mark.parametrize("conf,message", [
    (dict(beam_size=2, nbest=3), "nbest (3) must be between 1 and beam_size (2)"),
    (dict(max_length=0, max_length_ratio=0), "never stop"),
    (dict(beam_sise=3), "unknown key(s) ['beam_sise']"),
])
def test_decoding_options_validated(conf, message):
    with pytest.raises(ValueError, match=None) as error:
        DecodingOptions.from_dict(conf)
    assert message in str(error.value)


def test_checkpoints_leave_out_frozen_pretrained_weights(tokens_dir):
    args = task_args(tokens_dir, "--llm_conf", "finetune=lora")
    model = SpeechLLMTask.build_model(args)
    state = model.state_dict()
    assert any("lora_A" in k for k in state) and any(k.startswith("encoder.") for k in state)
    assert not any(k.startswith("llm.") and "lora_" not in k for k in state)
    other = SpeechLLMTask.build_model(args)
    other.load_state_dict(state)  # strict: the frozen LLM weights come from the LLM folder
    key = next(k for k in state if "lora_B" in k)
    assert torch.equal(other.state_dict()[key], state[key])
    with pytest.raises(RuntimeError, match="missing"):
        other.load_state_dict({k: v for k, v in state.items() if not k.startswith("adapter.")})
    full = SpeechLLMTask.build_model(task_args(tokens_dir, "--llm_conf", "finetune=full"))
    with pytest.raises(RuntimeError, match="checkpoint does not match"):
        full.load_state_dict(state)


def test_toy_llm_pretraining_learns_the_transcripts(tmp_path):
    from transformers import AutoModelForCausalLM

    losses = {}
    for steps in (0, 150):
        (tmp_path / f"toy{steps}.yaml").write_text(yaml.safe_dump({**TOY, "pretrain_steps": steps}))
        make_toy_llm(tmp_path / f"toy{steps}.yaml", SENTENCES, tmp_path / f"llm{steps}")
        tokenizer = load_tokenizer(str(tmp_path / f"llm{steps}"))
        model = AutoModelForCausalLM.from_pretrained(tmp_path / f"llm{steps}")  # what was saved, reloaded
        ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer("one two three four five").input_ids[-5:]]])
        with torch.no_grad():
            losses[steps] = model(input_ids=ids, labels=ids).loss.item()
    assert losses[150] < 0.6 * losses[0], losses


def test_toy_llm_learns_to_write_a_sentence_from_its_misspelt_copy_at_aligned_positions(tmp_path):
    """pretrain_aligned_copies: [BOS, copy, BOS] at the positions SpeechLLM gives aligned speech with a one-token
    suffix; after pretraining on nothing but such copies, reading the exact copy beats reading another sentence's."""
    import random

    from transformers import AutoModelForCausalLM

    from speechllm.bin.prepare_tokens import aligned_positions, misspelt

    assert aligned_positions(4, 2) == [0, 1.25, 1.75, 2.25, 2.75, 1, 2, 3, 4]
    rng = random.Random(0)
    copies = [misspelt(list(range(10, 30)), 64, 5, rng, 0.2) for _ in range(200)]
    kept = sum(len(c) for c in copies) / (20 * 200)
    changed = sum(sum(a != b for a, b in zip(c, range(10, 30))) for c in copies if len(c) == 20)
    assert 0.85 < kept < 0.95 and changed > 0  # a tenth dropped, some replaced
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump({**TOY, "pretrain_steps": 120, "pretrain_lr": 0.01,
                                                       "pretrain_aligned_copies": 1.0, "pretrain_path_noise": 0.0}))
    letters = random.Random(1)
    sentences = [" ".join(letters.choice("abcdefgh") for _ in range(6)) for _ in range(3000)]  # unmemorisable
    make_toy_llm(tmp_path / "toy.yaml", sentences, tmp_path / "llm")
    tokenizer = load_tokenizer(str(tmp_path / "llm"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "llm").eval()

    def loss(copy_of: str, target: str) -> float:
        copy, text = token_ids(tokenizer, copy_of), token_ids(tokenizer, target)
        ids = [tokenizer.bos_token_id, *copy, tokenizer.bos_token_id, *text, tokenizer.eos_token_id]
        labels = [-100] * (len(copy) + 2) + text + [tokenizer.eos_token_id]
        positions = aligned_positions(len(copy), len(text))
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]),
                         position_ids=torch.tensor([positions])).loss.item()

    held_out = ["h g f e d c", "c a b h a g"]
    assert loss(held_out[0], held_out[0]) < 0.5 * loss(held_out[1], held_out[0])  # measured: 0.004 against 7.8


@pytest.mark.parametrize("conf,message", [
    ("{heads: 4}", "model_conf.cross_attention_conf: unknown key(s) ['heads']"),
    ("{layers: [0, 7]}", "must be indices of the LLM's 2 decoder layers (0..1)"),
    ("{num_heads: 5}", "num_heads: 5 does not divide the LLM's hidden size 64"),
])
def test_bad_cross_attention_conf_names_the_key(tokens_dir, conf, message):
    args = task_args(tokens_dir, "--model_conf", "interface=cross_attention", "--model_conf",
                     f"cross_attention_conf={conf}")
    with pytest.raises(ValueError) as error:
        SpeechLLMTask.build_model(args)
    assert message in str(error.value)


def bpe_units_args(tokens_dir, *extra):
    return task_args(tokens_dir, "--token_type", "bpe", "--bpemodel", str(tokens_dir / "ctc_bpe.model"),
                     "--model_conf", "prompt=transcribe", *extra, ctc_token_type="llm")


def test_bpe_label_units_rebuild_the_llm_vocabulary(tokens_dir):
    """--token_type bpe: the LLM's embedding and output layer are rebuilt over the corpus's BPE pieces plus the LLM
    tokens it still reads (EOS, BOS, the prompt's), each piece's row the mean of the LLM's rows of its spelling; the
    text round-trips through the label ids; the frozen LLM trains only its new layers; the CTC head over the LLM's
    label units and the search work on the new ids."""
    from speechllm.tasks.speech_llm import load_label_tokenizer

    args = bpe_units_args(tokens_dir, "--llm_conf", "finetune=frozen")
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args)
    units = load_label_tokenizer(args)
    llm_tokenizer = load_tokenizer(str(tokens_dir / "llm"))
    prompt = token_ids(llm_tokenizer, "transcribe")
    assert units.kept_llm_ids == list(dict.fromkeys([llm_tokenizer.eos_token_id, llm_tokenizer.bos_token_id,
                                                      *prompt]))
    assert len(units) == 40 + len(units.kept_llm_ids)
    assert model.llm.get_input_embeddings().weight.shape == (len(units), TOY["hidden_size"])
    assert model.llm.get_output_embeddings().weight.shape == (len(units), TOY["hidden_size"])
    original = load_causal_lm(str(tokens_dir / "llm"), finetune="frozen").get_input_embeddings().weight
    new = model.llm.get_input_embeddings().weight
    piece = next(i for i, text in enumerate(units.piece_spellings()) if text == " five")
    assert torch.allclose(new[piece], original[token_ids(llm_tokenizer, " five")].mean(0))
    assert torch.equal(new[units.eos_token_id], original[llm_tokenizer.eos_token_id])
    assert model.prompt_ids.tolist() == [units.bos_token_id] + [units.from_llm_id[i] for i in prompt]
    assert model.eos_id == units.eos_token_id
    for text in SENTENCES[:6]:
        ids = token_ids(units, text)
        assert max(ids) < 40 and units.decode(ids + [units.eos_token_id]) == text
    batch = make_batch(args)
    assert int(batch["text"].max()) < 40
    loss, stats, _ = model(**batch)
    loss.backward()
    trained = {name for name, p in model.llm.named_parameters() if p.grad is not None}
    assert trained == {"model.embed_tokens.weight"}  # tied to the output layer, as the toy LLM's
    model.eval()
    hyps = BeamSearch.for_speech_llm(model, DecodingOptions(beam_size=2, ctc_weight=0.3, max_length=5,
                                                            max_length_ratio=0),
                                     eos_id=model.eos_id, suppress_ids=units.suppressed_ids())(
        model.encode_speech(batch["speech"], batch["speech_lengths"]))
    assert all(all(t < 40 for t in h.token_ids) for nbest in hyps for h in nbest)
    state = model.state_dict()
    assert "llm.model.embed_tokens.weight" in state  # the new layer is saved; the frozen LLM's weights are not
    assert not any(k.endswith("q_proj.weight") for k in state)


def test_bpe_label_units_need_their_model(tokens_dir):
    with pytest.raises(FileNotFoundError, match="--bpemodel: no such file"):
        SpeechLLMTask.build_model(task_args(tokens_dir, "--token_type", "bpe"))
    with pytest.raises(ValueError, match="--token_type is llm"):
        SpeechLLMTask.build_model(task_args(tokens_dir, "--bpemodel", str(tokens_dir / "ctc_bpe.model")))


def test_prompt_variants_in_training_and_a_decoding_prompt(tokens_dir):
    """Training draws each utterance's prompt from model_conf.prompt and prompt_variants; a decoding prompt replaces
    the model's, and the search's scores equal a full recompute after that prompt."""
    args = task_args(tokens_dir, "--llm_conf", "finetune=full", "--model_conf", "prompt=one two",
                     "--model_conf", "prompt_variants=[five, zero six seven]")
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args)
    drawn = {tuple(ids.tolist()) for ids in model.training_prompts(60)}
    expected = {tuple(model.prompt_head(token_ids(load_tokenizer(str(tokens_dir / "llm")), text)))
                for text in ("one two", "five", "zero six seven")}
    assert drawn == expected
    batch = make_batch(args)
    model.train()
    model(**batch)[0].backward()  # variants of different lengths in one left-padded batch
    model.eval()
    variant = token_ids(load_tokenizer(str(tokens_dir / "llm")), "zero six seven")
    options = DecodingOptions(beam_size=2, nbest=2, max_length=5, max_length_ratio=0, length_penalty=0)
    speech = model.encode_speech(batch["speech"], batch["speech_lengths"])
    hyps = BeamSearch.for_speech_llm(model, options, eos_id=model.eos_id, prompt_ids=variant)(speech)
    with torch.no_grad():
        head = torch.tensor(model.prompt_head(variant))
        for i, nbest in enumerate(hyps):
            n = int(speech.speech_lengths[i])
            prefix, _ = model.speech_prefix(speech.speech_embeds[i:i + 1, :n], speech.speech_lengths[i:i + 1], [head])
            for hyp in nbest:
                assert hyp.logprob == pytest.approx(logprob_by_full_recompute(prefix[0], hyp.token_ids, model),
                                                    abs=1e-3)


def test_a_decoding_prompt_outside_the_rebuilt_vocabulary_is_named(tokens_dir):
    from speechllm.tasks.speech_llm import load_label_tokenizer
    from speechllm.text.tokenizers import prompt_label_ids

    units = load_label_tokenizer(bpe_units_args(tokens_dir))  # keeps the tokens of "transcribe" only
    assert prompt_label_ids(units, "transcribe") == [units.from_llm_id[i] for i in
                                                     token_ids(units.llm_tokenizer, "transcribe")]
    with pytest.raises(ValueError, match="decoding option prompt 'zero six'.*not in the model's rebuilt vocabulary"):
        prompt_label_ids(units, "zero six", "decoding option prompt")
