"""The audio-visual model parts (issue 10, section 2): the lip encoder, visual injection into a frozen SFM (tiny
random Whisper/HuBERT/ESPnet encoders built offline, and the real Whisper tiny.en when ../shared has it), modality
dropout, stage 1's corruption and loss, task prompts, and the errors of bad configs."""
import pytest
import torch
from transformers import HubertConfig, HubertModel, WhisperConfig, WhisperFeatureExtractor, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from speechllm.models.visual_frontend import VisualFrontend
from speechllm.models.visual_injection import (ASR, AVSR, CORRUPTIONS, MODES, VSR, AudioCorruption, ModalityDropout,
                                               VisualInjection, checked_conf, injection_pretraining_loss,
                                               modes_for_task, resample_visual, sfm_layers, task_prompt)

VISUAL_SIZE = 16
KINDS = ("gated_add", "cross_attention")


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    for p in model.parameters():
        p.requires_grad = False
    return model.eval()


def tiny_whisper_config(layers: int = 2) -> WhisperConfig:
    # max_source_positions 50: the encoder takes exactly 100 mel frames (1 s) and gives 50 frames (50 per second).
    return WhisperConfig(d_model=32, encoder_layers=layers, encoder_attention_heads=4, encoder_ffn_dim=64,
                         decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64, vocab_size=64,
                         num_mel_bins=80, max_source_positions=50, max_target_positions=16,
                         pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=0,
                         begin_suppress_tokens=None, suppress_tokens=None)


def tiny_whisper_encoder() -> WhisperEncoder:
    torch.manual_seed(0)
    return frozen(WhisperEncoder(tiny_whisper_config()))


def tiny_hubert() -> HubertModel:
    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                          conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                          vocab_size=8)
    return frozen(HubertModel(config))


def tiny_wavlm():
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    config = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                         num_buckets=16, max_bucket_distance=100, vocab_size=8)
    return frozen(WavLMModel(config))


def run_whisper(encoder):
    """run_sfm for a transformers Whisper encoder on (B, 80, 100) mel: all 50 output frames valid."""
    def run(mel, lengths):
        hidden = encoder(mel).last_hidden_state
        return hidden, torch.full((mel.size(0),), hidden.size(1))
    return run


def run_hubert(model):
    def run(speech, lengths):
        mask = (torch.arange(speech.size(1))[None] < lengths[:, None]).long()
        hidden = model(speech, attention_mask=mask).last_hidden_state
        return hidden, model._get_feat_extract_output_lengths(lengths)
    return run


def sfm_and_input(name: str):
    """(model, run_sfm, input, input lengths, video frames per utterance) for 1 s and 0.8 s utterances."""
    torch.manual_seed(1)
    if name == "whisper":
        encoder = tiny_whisper_encoder()
        return encoder, run_whisper(encoder), torch.randn(2, 80, 100), torch.tensor([100, 100]), [25, 20]
    model = tiny_hubert() if name == "hubert" else tiny_wavlm()
    speech = torch.randn(2, 16000) * 0.1
    speech[1, 12800:] = 0.0
    return model, run_hubert(model), speech, torch.tensor([16000, 12800]), [25, 20]


def visual_batch(frames, generator_seed: int = 2):
    torch.manual_seed(generator_seed)
    lengths = torch.tensor(frames)
    features = torch.randn(len(frames), max(frames), VISUAL_SIZE)
    return features, lengths


def open_gates(injection: VisualInjection, value: float = 1.0) -> None:
    with torch.no_grad():
        for block in injection.blocks:
            block.gate.fill_(value)


# ---- injection: exactness, gradients, locality ------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # transformers' WavLM attention
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sfm_name", ["whisper", "hubert", "wavlm"])
def test_closed_gates_give_the_sfm_exactly_and_open_gates_change_it(sfm_name, kind):
    model, run, speech, lengths, frames = sfm_and_input(sfm_name)
    with torch.no_grad():
        plain, plain_lengths = run(speech, lengths)
    injection = VisualInjection.for_sfm(model, VISUAL_SIZE, {"kind": kind})
    assert injection.layers == [0, 1]
    features, visual_lengths = visual_batch(frames)
    with torch.no_grad(), injection.visual(features, visual_lengths):
        injected, injected_lengths = run(speech, lengths)
    assert torch.equal(injected, plain) and torch.equal(injected_lengths, plain_lengths)
    assert injection.hook_calls == [1, 1]
    open_gates(injection)
    with torch.no_grad(), injection.visual(features, visual_lengths):
        opened, _ = run(speech, lengths)
    assert (opened - plain).abs().max() > 1e-3
    with torch.no_grad(), injection.without_visual():  # the SFM alone, hooks still attached
        alone, _ = run(speech, lengths)
    assert torch.equal(alone, plain)
    injection.detach()
    with torch.no_grad():
        detached, _ = run(speech, lengths)  # no context needed once detached
    assert torch.equal(detached, plain)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sfm_name", ["whisper", "hubert"])
def test_training_moves_only_the_visual_frontend_and_injection(sfm_name, kind):
    model, run, speech, lengths, frames = sfm_and_input(sfm_name)
    sfm_before = {name: p.detach().clone() for name, p in model.named_parameters()}
    torch.manual_seed(3)
    frontend = VisualFrontend(output_size=VISUAL_SIZE, size="tiny")
    injection = VisualInjection.for_sfm(model, VISUAL_SIZE, {"kind": kind, "layers": [1]})
    frontend_before = {name: p.detach().clone() for name, p in frontend.named_parameters()}
    trained = list(frontend.parameters()) + list(injection.parameters())
    optimizer = torch.optim.Adam(trained, lr=1e-2)
    video = torch.randint(0, 256, (2, max(frames), 96, 96), dtype=torch.uint8)
    corrupted = speech + torch.randn(speech.shape) * speech.std()
    losses = []
    # Closed gates pass no gradient to the projections and the frontend at the first step, only to the gates:
    # three steps move everything that trains.
    for _ in range(3):
        optimizer.zero_grad()
        features, visual_lengths = frontend(video, torch.tensor(frames))
        loss = injection_pretraining_loss(run, injection, speech, corrupted, lengths, features, visual_lengths)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert all(p.grad is None for p in model.parameters())
    assert losses[-1] < losses[0]
    for name, p in model.named_parameters():
        assert torch.equal(p, sfm_before[name]), name
    assert all(block.gate.item() != 0 for block in injection.blocks)
    changed = [name for name, p in frontend.named_parameters() if not torch.equal(p, frontend_before[name])]
    assert {"frontend3D.0.weight", "trunk.layer4.0.conv2.weight", "projection.weight"} <= set(changed)


def layer_inputs(model, run, speech, lengths):
    """The hidden states entering each SFM layer in one run (hooks registered after the injection's see its
    output)."""
    seen = []
    handles = [layer.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
               for layer in sfm_layers(model)]
    with torch.no_grad():
        run(speech, lengths)
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("kind", KINDS)
def test_injection_acts_at_the_chosen_layers_only(kind):
    model, run, speech, lengths, frames = sfm_and_input("whisper")
    plain_inputs = layer_inputs(model, run, speech, lengths)
    injection = VisualInjection.for_sfm(model, VISUAL_SIZE, {"kind": kind, "layers": [1]})
    open_gates(injection)
    features, visual_lengths = visual_batch(frames)
    with injection.visual(features, visual_lengths):
        injected_inputs = layer_inputs(model, run, speech, lengths)
        assert injection.hook_calls == [1]
        run(speech, lengths)
    assert injection.hook_calls == [2]  # one block, once per forward
    assert torch.equal(injected_inputs[0], plain_inputs[0])  # before the chosen layer: untouched
    assert (injected_inputs[1] - plain_inputs[1]).abs().max() > 1e-3
    # every=2 over 2 layers: layer 0 only
    injection.detach()
    assert VisualInjection.for_sfm(model, VISUAL_SIZE, {"every": 2}).layers == [0]


@pytest.mark.parametrize("kind", KINDS)
def test_utterances_without_video_get_no_injection(kind):
    model, run, speech, lengths, frames = sfm_and_input("hubert")
    with torch.no_grad():
        plain, _ = run(speech, lengths)
    injection = VisualInjection.for_sfm(model, VISUAL_SIZE, {"kind": kind})
    open_gates(injection)
    features, visual_lengths = visual_batch(frames)
    with torch.no_grad(), injection.visual(features, visual_lengths, present=torch.tensor([False, True])):
        injected, _ = run(speech, lengths)
    assert torch.equal(injected[0], plain[0])
    assert (injected[1] - plain[1]).abs().max() > 1e-3


def test_padded_video_frames_do_not_leak_into_the_injection():
    """Garbage past a video's length changes nothing, and injection stops where the video ends."""
    model, run, speech, lengths, frames = sfm_and_input("whisper")
    injection = VisualInjection.for_sfm(model, VISUAL_SIZE, {"kind": "gated_add", "layers": [0]})
    open_gates(injection)
    features, visual_lengths = visual_batch([25, 10])
    garbage = features.clone()
    garbage[1, 10:] = 1e3
    with torch.no_grad():
        with injection.visual(features, visual_lengths):
            clean_inputs = layer_inputs(model, run, speech, lengths)
        with injection.visual(garbage, visual_lengths):
            garbage_inputs = layer_inputs(model, run, speech, lengths)
        with injection.without_visual():
            plain_inputs = layer_inputs(model, run, speech, lengths)
    assert torch.equal(clean_inputs[0], garbage_inputs[0])
    changed = (clean_inputs[0][1] - plain_inputs[0][1]).abs().amax(-1) > 0  # (50,) Whisper frames
    assert changed[:20].all() and not changed[20:].any()  # 10 video frames = 20 Whisper frames


def test_espnet_conformer_layers_take_injection_through_their_tuple_input():
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    torch.manual_seed(0)
    encoder = frozen(ConformerEncoder(input_size=8, output_size=16, attention_heads=2, linear_units=32,
                                      num_blocks=2, input_layer="conv2d", cnn_module_kernel=3))
    feats, feat_lengths = torch.randn(2, 100, 8), torch.tensor([100, 80])  # 100 fps fbank -> 25 fps after conv2d
    with torch.no_grad():
        plain, _, _ = encoder(feats, feat_lengths)
    injection = VisualInjection.for_sfm(encoder, VISUAL_SIZE, {"sfm_fps": 25.0})
    assert len(sfm_layers(encoder)) == 2
    features, visual_lengths = visual_batch([25, 20])
    with torch.no_grad(), injection.visual(features, visual_lengths):
        injected, _, _ = encoder(feats, feat_lengths)
    assert torch.equal(injected, plain)
    open_gates(injection)
    with torch.no_grad(), injection.visual(features, visual_lengths):
        injected, _, _ = encoder(feats, feat_lengths)
    assert (injected - plain).abs().max() > 1e-3 and injection.hook_calls == [2, 2]


def test_through_the_repos_whisper_frontend(tmp_path):
    """HFSpeechEncoderFrontend (its own masked layer loop) with a saved tiny random Whisper: found, exact at 0."""
    from speechllm.models.hf_speech_encoder import HFSpeechEncoderFrontend

    torch.manual_seed(0)
    WhisperModel(tiny_whisper_config()).save_pretrained(tmp_path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(tmp_path)
    frontend = HFSpeechEncoderFrontend(str(tmp_path), multilayer_feature=False)
    speech = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 9600])
    with torch.no_grad():
        plain, plain_lengths = frontend(speech, lengths)
    injection = VisualInjection.for_sfm(frontend, VISUAL_SIZE, {"kind": "cross_attention"})
    features, visual_lengths = visual_batch([25, 15])
    with torch.no_grad(), injection.visual(features, visual_lengths):
        injected, _ = frontend(speech, lengths)
    assert torch.equal(injected, plain) and plain_lengths.tolist() == [50, 30]
    open_gates(injection)
    with torch.no_grad(), injection.visual(features, visual_lengths):
        injected, _ = frontend(speech, lengths)
    assert (injected[1, :30] - plain[1, :30]).abs().max() > 1e-3


def test_real_whisper_tiny_en_encoder(shared_dir):
    from speechllm.models.hf_speech_encoder import HFSpeechEncoderFrontend

    folder = shared_dir / "models" / "whisper-tiny.en"
    if not (folder / "config.json").is_file():
        pytest.skip(f"{folder} is absent (the real Whisper tiny.en lives in ../shared on developer machines)")
    frontend = HFSpeechEncoderFrontend(str(folder), multilayer_feature=False)
    torch.manual_seed(0)
    speech = torch.randn(1, 16000) * 0.05
    lengths = torch.tensor([16000])
    with torch.no_grad():
        plain, _ = frontend(speech, lengths)
    injection = VisualInjection.for_sfm(frontend, VISUAL_SIZE, {"layers": [1, 3]})
    assert len(sfm_layers(frontend)) == 4 and injection.blocks[0].projection.out_features == 384
    features, visual_lengths = visual_batch([25])
    with torch.no_grad(), injection.visual(features, visual_lengths):
        injected, _ = frontend(speech, lengths)
    assert torch.equal(injected, plain)
    open_gates(injection, 0.5)
    with torch.no_grad(), injection.visual(features, visual_lengths):
        injected, _ = frontend(speech, lengths)
    assert (injected - plain).abs().max() > 1e-3 and injection.hook_calls == [2, 2]


# ---- resampling -------------------------------------------------------------------------------------------------
def test_resampling_25_to_50_fps_nearest_and_linear():
    features = torch.arange(2 * 7 * 1, dtype=torch.float32).view(2, 7, 1) + 1
    lengths = torch.tensor([7, 4])
    out, out_lengths = resample_visual(features, lengths, source_fps=25, target_fps=50)
    assert out.shape == (2, 14, 1) and out_lengths.tolist() == [14, 8]
    assert out[0, :, 0].tolist() == [v for v in range(1, 8) for _ in (0, 1)]  # each frame twice, in time
    assert out[1, :8, 0].tolist() == [8, 8, 9, 9, 10, 10, 11, 11] and (out[1, 8:] == 0).all()
    linear, _ = resample_visual(features, lengths, source_fps=25, target_fps=50, method="linear")
    # 50 fps frame j is centred at 25 fps frame j/2 - 1/4 (clamped to the utterance's frames)
    assert linear[0, :4, 0].tolist() == pytest.approx([1.0, 1.25, 1.75, 2.25])
    assert linear[0, 13, 0].item() == pytest.approx(7.0) and linear[1, 7, 0].item() == pytest.approx(11.0)
    # the SFM's frame count decides the width: HuBERT gives 49 frames for 1 s, 2 s padded batches 100
    cut, cut_lengths = resample_visual(features, lengths, target_frames=13)
    assert cut.shape == (2, 13, 1) and cut_lengths.tolist() == [13, 8]
    wide, _ = resample_visual(features, lengths, target_frames=20)
    assert (wide[0, 14:] == 0).all() and torch.equal(wide[:, :14], out)


def test_resampling_odd_lengths_and_other_rates():
    features = torch.randn(3, 7, 4)
    lengths = torch.tensor([7, 3, 1])
    _, down = resample_visual(features, lengths, source_fps=25, target_fps=12.5)  # e.g. conformer subsampling 8
    assert down.tolist() == [4, 2, 1]
    out, up = resample_visual(features, lengths, source_fps=25, target_fps=50)
    assert up.tolist() == [14, 6, 2]
    assert torch.equal(out[2, 0], features[2, 0]) and torch.equal(out[2, 1], features[2, 0])
    _, same = resample_visual(features, lengths, source_fps=25, target_fps=25)
    assert same.tolist() == [7, 3, 1]
    with pytest.raises(ValueError, match="visual_injection_conf.resample: 'cubic'"):
        resample_visual(features, lengths, method="cubic")


# ---- modality dropout -------------------------------------------------------------------------------------------
def test_modality_dropout_draws_each_mode_at_its_frequency():
    dropout = ModalityDropout.from_conf({"audio_only_prob": 0.2, "video_only_prob": 0.3, "audio_visual_prob": 0.5})
    generator = torch.Generator().manual_seed(0)
    modes = torch.cat([dropout.draw_modes(1000, generator) for _ in range(20)])
    frequencies = torch.bincount(modes, minlength=3).double() / len(modes)
    assert frequencies.tolist() == pytest.approx([0.2, 0.3, 0.5], abs=0.01)
    again = torch.cat([dropout.draw_modes(1000, torch.Generator().manual_seed(0))] * 1)
    assert torch.equal(again, modes[:1000])  # seeded: reproducible
    speech = torch.randn(200, 50)
    lengths = torch.full((200,), 50)
    out, present, modes = dropout(speech, lengths, torch.Generator().manual_seed(1))
    assert set(modes.tolist()) == {ASR, VSR, AVSR}
    assert torch.equal(present, modes != ASR)
    assert (out[modes == VSR] == 0).all() and torch.equal(out[modes != VSR], speech[modes != VSR])
    never_video = ModalityDropout(audio_only_prob=1.0, video_only_prob=0.0, audio_visual_prob=0.0)
    assert (never_video.draw_modes(100) == ASR).all()


@pytest.mark.parametrize("video_only_audio", ["silence", "noise"])
def test_video_only_removes_the_audio_information(video_only_audio):
    model, run, speech, lengths, frames = sfm_and_input("hubert")
    other_speech = torch.randn(speech.shape) * 0.3 * (torch.arange(16000)[None] < lengths[:, None])
    injection = VisualInjection.for_sfm(model, VISUAL_SIZE, {})
    open_gates(injection)
    features, visual_lengths = visual_batch(frames)
    dropout = ModalityDropout(video_only_audio=video_only_audio, noise_std=0.01)
    vsr = modes_for_task("vsr", 2)
    outputs = []
    for audio in (speech, other_speech):
        replaced, present = dropout.apply(audio, lengths, vsr, torch.Generator().manual_seed(5))
        assert present.all()
        if video_only_audio == "noise":
            assert replaced[0].std().item() == pytest.approx(0.01, rel=0.1) and (replaced[1, 12800:] == 0).all()
        with torch.no_grad(), injection.visual(features, visual_lengths, present):
            outputs.append(run(replaced, lengths)[0])
    assert torch.equal(outputs[0], outputs[1])  # what the SFM gives no longer depends on the speech
    with torch.no_grad(), injection.visual(features, visual_lengths, present):
        with_audio = run(speech, lengths)[0]
    assert (with_audio - outputs[0]).abs().max() > 1e-2


# ---- stage 1 ----------------------------------------------------------------------------------------------------
def test_pretraining_loss_is_zero_only_for_the_clean_input_with_closed_gates():
    model, run, speech, lengths, frames = sfm_and_input("hubert")
    injection = VisualInjection.for_sfm(model, VISUAL_SIZE, {})
    features, visual_lengths = visual_batch(frames)
    args = (lengths, features, visual_lengths)
    assert injection_pretraining_loss(run, injection, speech, speech, *args).item() == 0.0
    corrupted, kinds = AudioCorruption(clean_prob=0, noise_prob=1, mask_prob=0, missing_prob=0)(speech, lengths)
    assert (kinds == CORRUPTIONS.index("noise")).all()
    assert injection_pretraining_loss(run, injection, speech, corrupted, *args).item() > 0
    assert injection_pretraining_loss(run, injection, speech, corrupted, *args, distance="l2").item() > 0
    open_gates(injection, 0.3)
    assert injection_pretraining_loss(run, injection, speech, speech, *args).item() > 0
    with pytest.raises(ValueError, match="distance: 'cosine'"):
        injection_pretraining_loss(run, injection, speech, speech, *args, distance="cosine")


def test_audio_corruption_kinds():
    generator = torch.Generator().manual_seed(0)
    speech = torch.randn(100, 2000)
    lengths = torch.randint(500, 2001, (100,))
    speech = speech * (torch.arange(2000)[None] < lengths[:, None])
    corruption = AudioCorruption.from_conf({"snr_low": 0, "snr_high": 5})
    out, kinds = corruption(speech, lengths, generator=generator)
    assert set(kinds.tolist()) == set(range(len(CORRUPTIONS)))
    for i, kind in enumerate(kinds.tolist()):
        n = int(lengths[i])
        assert (out[i, n:] == 0).all()
        name = CORRUPTIONS[kind]
        if name == "clean":
            assert torch.equal(out[i], speech[i])
        elif name == "missing":
            assert (out[i] == 0).all()
        elif name == "mask":
            zeroed = (out[i, :n] == 0) & (speech[i, :n] != 0)
            assert 0 < zeroed.sum() <= n * 0.5 and torch.equal(out[i, :n][~zeroed], speech[i, :n][~zeroed])
        else:
            added = out[i, :n] - speech[i, :n]
            snr = 10 * torch.log10(speech[i, :n].pow(2).mean() / added.pow(2).mean())
            assert -0.01 <= snr.item() <= 5.01
    babble = torch.randn(100, 2000)
    out, _ = AudioCorruption(clean_prob=0, noise_prob=1, mask_prob=0, missing_prob=0)(speech, lengths, babble)
    ratio = (out[0, :100] - speech[0, :100]) / babble[0, :100]
    assert torch.allclose(ratio, ratio[0].expand(100), rtol=1e-4)  # the given noise, scaled


# ---- prompts ----------------------------------------------------------------------------------------------------
def test_task_prompts():
    assert task_prompt("asr") == "Transcribe the audio." and task_prompt(VSR) == "Transcribe the lip movements."
    conf = checked_conf("model_conf.task_prompts", task_prompt, {"avsr": "Both, please."}, given=("mode",))
    assert [task_prompt(mode, **conf) for mode in MODES][2] == "Both, please."
    assert modes_for_task("avsr", 3).tolist() == [AVSR] * 3
    with pytest.raises(ValueError, match=r"model_conf.task_prompts: unknown key\(s\) \['mode'\]"):
        checked_conf("model_conf.task_prompts", task_prompt, {"mode": "asr"}, given=("mode",))
    with pytest.raises(ValueError, match="mode 'lipread' is not one of"):
        task_prompt("lipread")
    with pytest.raises(ValueError, match="decoding task 'lips'"):
        modes_for_task("lips", 1)


# ---- the lip encoder --------------------------------------------------------------------------------------------
def padded_video_batch():
    """Two ROI sequences of 9 and 5 frames; the second's padding holds garbage."""
    torch.manual_seed(0)
    video = torch.randint(0, 256, (2, 9, 96, 96), dtype=torch.uint8)
    video[1, 5:] = 255
    return video, torch.tensor([9, 5])


def run_alone_and_batched(frontend, video, lengths):
    """The batch's features, and the second utterance's alone."""
    with torch.no_grad():
        return frontend(video, lengths)[0], frontend(video[1:, :5], lengths[1:])[0]


def test_visual_frontend_shapes_padding_and_batch_independence():
    video, lengths = padded_video_batch()
    frontend = VisualFrontend(output_size=12, size="tiny").eval()
    assert frontend.output_size() == 12
    features, alone = run_alone_and_batched(frontend, video, lengths)
    with torch.no_grad():
        out_lengths = frontend(video, lengths)[1]
        as_float, _ = frontend(video.float(), lengths)
    assert features.shape == (2, 9, 12) and torch.equal(out_lengths, lengths)  # one vector per video frame
    assert (features[1, 5:] == 0).all()
    assert torch.allclose(features[1, :5], alone[0], atol=1e-5)
    assert torch.equal(features, as_float)
    big = VisualFrontend(output_size=12, size="resnet18")
    assert big.trunk.output_channels == 512 and 11e6 < sum(p.numel() for p in big.parameters()) < 12e6


def test_visual_frontend_temporal_layers_see_neighbouring_frames_and_stay_batch_independent():
    video, lengths = padded_video_batch()
    frontend = VisualFrontend(output_size=12, size="tiny", temporal_layers=2, temporal_kernel=3).eval()
    features, alone = run_alone_and_batched(frontend, video, lengths)
    with torch.no_grad():
        changed = video.clone()
        changed[0, 8] = 0  # the last frame: the stem reaches 2 frames back, two layers of 3 frames 2 more
        moved, _ = frontend(changed, lengths)
    assert features.shape == (2, 9, 12) and (features[1, 5:] == 0).all()
    assert torch.allclose(features[1, :5], alone[0], atol=1e-5)
    assert not torch.allclose(moved[0, 4], features[0, 4]) and torch.allclose(moved[0, :4], features[0, :4])
    assert torch.equal(moved[1], features[1])
    with pytest.raises(ValueError, match="temporal_kernel odd"):
        VisualFrontend(size="tiny", temporal_layers=1, temporal_kernel=4)


def test_visual_frontend_input_pool_reads_the_roi_averaged():
    torch.manual_seed(0)
    frontend = VisualFrontend(output_size=12, size="tiny", input_pool=2).eval()
    video = torch.randint(0, 256, (2, 6, 96, 96), dtype=torch.uint8)
    lengths = torch.tensor([6, 4])
    with torch.no_grad():
        features, _ = frontend(video, lengths)
        frontend.input_pool = 1  # the same weights on a 48 x 48 ROI averaged beforehand
        averaged, _ = frontend(torch.nn.functional.avg_pool2d(video.float(), 2), lengths)
    assert features.shape == (2, 6, 12) and (features[1, 4:] == 0).all()
    assert torch.allclose(features, averaged, atol=1e-4)
    with pytest.raises(ValueError, match=r"visual_frontend_conf.input_pool must be >= 1"):
        VisualFrontend(input_pool=0)


def test_visual_frontend_loads_a_checkpoint_and_names_wrong_keys(tmp_path):
    torch.manual_seed(0)
    source = VisualFrontend(output_size=12, size="tiny", activation="prelu").eval()
    state = {f"encoder.frontend.{k}": v for k, v in source.state_dict().items()}
    state["decoder.embed.weight"] = torch.zeros(3)  # other parts of a whole model's checkpoint
    path = tmp_path / "model.pt"
    torch.save({"state_dict": state}, path)
    loaded = VisualFrontend(output_size=12, size="tiny", activation="prelu", init_checkpoint=str(path),
                            checkpoint_prefix="encoder.frontend.").eval()
    video = torch.randint(0, 256, (1, 6, 96, 96), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(loaded(video, torch.tensor([6]))[0], source(video, torch.tensor([6]))[0])
    with pytest.raises(ValueError, match=r"missing keys \[\], unexpected keys \['frontend3D.2.weight'.*"
                                         "set size/activation"):
        VisualFrontend(size="tiny", activation="relu", output_size=12, init_checkpoint=str(path),
                       checkpoint_prefix="encoder.frontend.")  # the checkpoint's PReLU weights are unexpected
    with pytest.raises(ValueError, match=r"missing keys \['frontend3D.2.weight'"):  # and missing the other way
        no_prelu = {k: v for k, v in state.items()
                    if "relu" not in k and not k.startswith("encoder.frontend.frontend3D.2")}
        torch.save(no_prelu, tmp_path / "relu.pt")
        VisualFrontend(size="tiny", activation="prelu", output_size=12, init_checkpoint=str(tmp_path / "relu.pt"),
                       checkpoint_prefix="encoder.frontend.")
    with pytest.raises(ValueError, match=r"no key of .* starts with 'frontend.'; its keys start with "
                                         r"\['decoder', 'encoder'\]"):
        VisualFrontend(size="tiny", activation="prelu", init_checkpoint=str(path), checkpoint_prefix="frontend.")
    with pytest.raises(ValueError, match="set visual_frontend_conf.output_size"):
        VisualFrontend(size="tiny", activation="prelu", output_size=7, init_checkpoint=str(path),
                       checkpoint_prefix="encoder.frontend.")
    with pytest.raises(FileNotFoundError, match="visual_frontend_conf.init_checkpoint: '/nonexistent.pt'"):
        VisualFrontend(init_checkpoint="/nonexistent.pt")


# ---- errors -----------------------------------------------------------------------------------------------------
def test_config_errors_name_the_key_and_the_fix():
    encoder = tiny_whisper_encoder()
    with pytest.raises(ValueError, match=r"visual_injection_conf: unknown key\(s\) \['layer'\]; valid keys: "
                                         r".*'layers'"):
        VisualInjection.for_sfm(encoder, VISUAL_SIZE, {"layer": [1]})
    with pytest.raises(ValueError, match="visual_injection_conf.every: expected an integer"):
        VisualInjection.for_sfm(encoder, VISUAL_SIZE, {"every": "2"})
    with pytest.raises(ValueError, match=r"visual_injection_conf.layers: \[0, 2\] must be indices of the SFM's 2 "
                                         r"layers \(0..1\)"):
        VisualInjection.for_sfm(encoder, VISUAL_SIZE, {"layers": [0, 2]})
    with pytest.raises(ValueError, match="visual_injection_conf.kind: 'concat' is not one of"):
        VisualInjection.for_sfm(encoder, VISUAL_SIZE, {"kind": "concat"})
    with pytest.raises(ValueError, match="num_heads: 3 does not divide the SFM's hidden size 32"):
        VisualInjection.for_sfm(encoder, VISUAL_SIZE, {"kind": "cross_attention", "num_heads": 3})
    with pytest.raises(ValueError, match="visual_injection_conf.sfm_fps: 25 but WhisperEncoder's layers run at 50 "
                                         "frames per second; set sfm_fps: 50"):
        VisualInjection.for_sfm(encoder, VISUAL_SIZE, {"sfm_fps": 25.0})
    with pytest.raises(ValueError, match="cannot find the layers of Linear .*SFM_LAYER_PATHS"):
        VisualInjection.for_sfm(torch.nn.Linear(4, 4), VISUAL_SIZE, {})
    with pytest.raises(ValueError, match=r"modality_dropout_conf: audio_only_prob \+ video_only_prob \+ "
                                         "audio_visual_prob = 1.45; they must add up to 1"):
        ModalityDropout.from_conf({"audio_only_prob": 0.7})
    with pytest.raises(ValueError, match=r"modality_dropout_conf: unknown key\(s\) \['vsr_prob'\]"):
        ModalityDropout.from_conf({"vsr_prob": 0.5})
    with pytest.raises(ValueError, match="video_only_audio: 'babble' is not one of"):
        ModalityDropout(video_only_audio="babble")
    with pytest.raises(ValueError, match="audio_corruption_conf: snr_low"):
        AudioCorruption(snr_low=10, snr_high=0)
    with pytest.raises(ValueError, match="visual_frontend_conf.size: 'resnet50' is not one of"):
        VisualFrontend.from_conf({"size": "resnet50"})
    with pytest.raises(ValueError, match="visual_frontend_conf.output_size: expected an integer"):
        VisualFrontend.from_conf({"output_size": "256"})
    assert VisualFrontend.from_conf({"size": "tiny", "output_size": 8}).output_size() == 8


def test_misuse_errors():
    model, run, speech, lengths, frames = sfm_and_input("whisper")
    injection = VisualInjection.for_sfm(model, VISUAL_SIZE, {})
    with pytest.raises(RuntimeError, match=r"ran without visual features: run the SFM inside `with injection.visual"):
        run(speech, lengths)
    with pytest.raises(RuntimeError, match="already attached"):
        injection.attach(model)
    features, visual_lengths = visual_batch([25])
    with pytest.raises(ValueError, match="runs on a batch of 2 but the visual features .* a batch of 1"):
        with injection.visual(features, visual_lengths):
            run(speech, lengths)
    assert injection._batch is None  # the context is left clean after an error
