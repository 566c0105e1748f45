"""The audio-visual speech LLM through the task: a tiny random Whisper (the frozen SFM) with visual injection, a tiny
lip encoder, the toy LLM and a CTC head over its tokens; stage 1 (injection pretraining) and stage 2 (recognition
with modality dropout) forward/backward, what trains, the task prompts, decoding each task, checkpoints, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from transformers import WhisperFeatureExtractor, WhisperModel

from speechllm.decoding.options import DecodingOptions
from speechllm.models.visual_injection import ASR, AVSR, MODES, VSR, task_prompt
from speechllm.speech2text import Speech2Text
from speechllm.tasks.speech_llm import SpeechLLMTask
from test_model import tokens_dir  # noqa: F401 (fixture)
from test_visual_injection import tiny_whisper_config

RATE = 16000
FPS = 25
# The tiny Whisper takes at most 1 s (max_source_positions 50).
LENGTHS = (16000, 12000, 8000)
TEXTS = ["one two three", "p i t t", "five"]
PROMPTS = {"asr": "one", "vsr": "two", "avsr": "three"}  # words the toy LLM's tokenizer knows


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("whisper")
    torch.manual_seed(0)
    WhisperModel(tiny_whisper_config()).save_pretrained(root)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(root)
    return root


def av_args(tokens_dir: Path, whisper_dir: Path, *extra: str, dropout: str = "{}"):  # noqa: F811
    argv = ["--output_dir", "unused", "--llm_conf", f"name_or_path={tokens_dir / 'llm'}", "--llm_conf",
            "finetune=full", "--ctc_token_type", "llm",
            "--frontend", "hf_speech_encoder", "--frontend_conf", f"name_or_path={whisper_dir}",
            "--frontend_conf", "multilayer_feature=false", "--speech_adapter_conf", "hidden_size=16",
            "--model_conf", "ctc_weight=0.3", "--model_conf", f"task_prompts={PROMPTS}",
            "--visual_frontend_conf", "{size: tiny, output_size: 16}",
            "--visual_injection_conf", "{kind: gated_add}", "--modality_dropout_conf", dropout, *extra]
    return SpeechLLMTask.get_parser().parse_args(argv)


def roi(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (int(round(seconds * FPS)), 96, 96), dtype=np.uint8)


def make_batch(args, with_video: bool = True):
    preprocess = SpeechLLMTask.build_preprocess_fn(args, train=True)
    collate = SpeechLLMTask.build_collate_fn(args, train=True)
    rng = np.random.default_rng(0)
    items = []
    for i, (n, text) in enumerate(zip(LENGTHS, TEXTS)):
        data = {"speech": (0.1 * rng.standard_normal(n)).astype(np.float32), "text": text}
        if with_video:
            data["video"] = roi(n / RATE, i)
        items.append((f"u{i}", preprocess(f"u{i}", data)))
    return collate(items)[1]


def open_gates(model, value: float = 0.5) -> None:
    with torch.no_grad():
        for block in model.visual_injection.blocks:
            block.gate.fill_(value)


def test_stage2_trains_the_visual_parts_adapter_llm_and_ctc_never_the_sfm(tokens_dir, whisper_dir):  # noqa: F811
    args = av_args(tokens_dir, whisper_dir, dropout="{audio_only_prob: 0.0, video_only_prob: 0.0, "
                                                    "audio_visual_prob: 1.0}")
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args)
    assert model.frontend.passes_gradient and model.frontend.freeze
    open_gates(model)  # closed gates (the start) pass no gradient to the projections and the lip encoder
    batch = make_batch(args)
    assert batch["video"].dtype == torch.float32 and batch["video_lengths"].tolist() == [25, 19, 12]
    model.train()
    loss, stats, _ = model(**batch)
    assert torch.isfinite(loss) and {"loss_llm", "loss_ctc", "acc"} <= set(stats)
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith("frontend.encoder."):
            assert not p.requires_grad and p.grad is None, name
        elif name.startswith(("visual_frontend.", "visual_injection.", "adapter.", "llm.", "ctc.")):
            if "num_batches_tracked" in name or not p.requires_grad:
                continue
            assert p.grad is not None, name
    for prefix in ("visual_frontend.projection", "visual_injection.blocks.0.projection", "adapter.", "ctc."):
        assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith(prefix)), prefix


def test_stage1_trains_only_the_visual_frontend_and_injection(tokens_dir, whisper_dir):  # noqa: F811
    args = av_args(tokens_dir, whisper_dir, "--model_conf", "injection_pretraining=true",
                   "--audio_corruption_conf", "{clean_prob: 0.0, noise_prob: 0.5, mask_prob: 0.0, missing_prob: 0.5}")
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"visual_frontend", "visual_injection"}
    model.train()
    loss, stats, _ = model(**make_batch(args))
    assert set(stats) == {"loss", "loss_injection"} and float(loss.detach()) > 0
    loss.backward()
    gates = [block.gate.grad for block in model.visual_injection.blocks]
    assert all(g is not None and g.abs() > 0 for g in gates)  # gates start closed: their gradient opens them
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)


def test_the_lip_encoders_ctc_head_trains_it_from_the_transcript_in_both_stages(tokens_dir, whisper_dir):  # noqa
    for stage1 in (False, True):
        extra = ["--model_conf", "visual_ctc_weight=0.5"]
        if stage1:
            extra += ["--model_conf", "injection_pretraining=true", "--audio_corruption_conf",
                      "{clean_prob: 0.0, noise_prob: 0.5, mask_prob: 0.0, missing_prob: 0.5}"]
        args = av_args(tokens_dir, whisper_dir, *extra)
        torch.manual_seed(0)
        model = SpeechLLMTask.build_model(args).train()
        if stage1:
            trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
            assert trainable == {"visual_frontend", "visual_ctc", "visual_injection"}
        # Closed gates: the lip encoder's only gradient is its CTC head's.
        loss, stats, _ = model(**make_batch(args))
        assert "loss_visual_ctc" in stats and float(stats["loss_visual_ctc"]) > 0
        others = float(stats["loss_injection"]) if stage1 else (0.7 * float(stats["loss_llm"])
                                                                  + 0.3 * float(stats["loss_ctc"]))
        assert float(loss) == pytest.approx(others + 0.5 * float(stats["loss_visual_ctc"]), rel=1e-4)
        loss.backward()
        for prefix in ("visual_frontend.projection", "visual_ctc."):
            assert any(p.grad is not None and p.grad.abs().sum() > 0
                       for n, p in model.named_parameters() if n.startswith(prefix)), (stage1, prefix)
    with pytest.raises(ValueError, match="visual_ctc_weight"):
        SpeechLLMTask.build_model(av_args(tokens_dir, whisper_dir, "--model_conf", "visual_ctc_weight=0.5",
                                          "--model_conf", "ctc_weight=0.0", "--ctc_token_type", "bpe"))


def test_modality_dropout_draws_each_mode_and_the_prompt_follows_it(tokens_dir, whisper_dir):  # noqa: F811
    args = av_args(tokens_dir, whisper_dir)  # the default probabilities: 0.25 / 0.25 / 0.5
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args).train()
    seen = []  # (modes, prompts, what the SFM heard)
    draw, prefix, frontend = model.modality_dropout.draw_modes, model.speech_prefix, model.frontend.forward
    heard = []
    model.modality_dropout.draw_modes = lambda batch: seen.append(draw(batch)) or seen[-1]
    model.speech_prefix = lambda embeds, lengths, prompts=None: heard.append(prompts) or prefix(embeds, lengths,
                                                                                               prompts)
    audio = []
    model.frontend.forward = lambda speech, lengths: audio.append(speech.clone()) or frontend(speech, lengths)
    batch = make_batch(args)
    for _ in range(6):
        with torch.no_grad():
            model(**batch)
    modes = torch.cat(seen)
    assert {int(m) for m in modes} == {ASR, VSR, AVSR}
    expected = {m: model.prompt_head(model_prompt_ids(args, m)) for m in MODES}
    for step_modes, prompts, speech in zip(seen, heard, audio):
        for i, mode in enumerate(step_modes.tolist()):
            assert prompts[i].tolist() == expected[MODES[mode]]
            # video only: the SFM hears silence; the other modes hear the utterance
            assert bool((speech[i] == 0).all()) == (mode == VSR)
    # Validation reads both modalities with the avsr prompt.
    heard.clear()
    with torch.no_grad():
        model.eval()(**batch)
    assert all(p.tolist() == expected["avsr"] for p in heard[-1])


def model_prompt_ids(args, mode):
    from speechllm.tasks.speech_llm import load_label_tokenizer
    from speechllm.text.tokenizers import prompt_label_ids

    return prompt_label_ids(load_label_tokenizer(args), task_prompt(mode, **PROMPTS))


@pytest.fixture(scope="module")
def av_model_dir(tokens_dir, whisper_dir, tmp_path_factory) -> Path:  # noqa: F811
    root = tmp_path_factory.mktemp("av_model")
    args = av_args(tokens_dir, whisper_dir)
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args)
    open_gates(model)
    (root / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), root / "model.pth")
    return root


def test_checkpoint_leaves_out_the_frozen_sfm_and_round_trips(av_model_dir):
    state = torch.load(av_model_dir / "model.pth", weights_only=True)
    assert not any(k.startswith("frontend.encoder.") for k in state)
    assert any(k.startswith("visual_frontend.") for k in state) and any(k.startswith("visual_injection.")
                                                                          for k in state)
    s2t = Speech2Text(str(av_model_dir / "config.yaml"), str(av_model_dir / "model.pth"))
    gates = [block.gate.item() for block in s2t.model.visual_injection.blocks]
    assert gates == [0.5, 0.5]  # the trained injection came back (a fresh build starts at 0)


def decode_inputs():
    speech = torch.from_numpy(0.1 * np.random.default_rng(5).standard_normal((2, 16000)).astype(np.float32))
    video = torch.from_numpy(np.stack([roi(1.0, 7), roi(1.0, 8)]))
    return speech, torch.tensor([16000, 12000]), video, torch.tensor([25, 19])


def test_each_task_decodes_with_joint_ctc(av_model_dir):
    speech, lengths, video, video_lengths = decode_inputs()
    encoded = {}
    for task in MODES:
        s2t = Speech2Text(str(av_model_dir / "config.yaml"), str(av_model_dir / "model.pth"),
                          DecodingOptions(task=task, ctc_weight=0.5, max_length=4, beam_size=2))
        hyps = s2t.decode(speech, lengths, video=video, video_lengths=video_lengths)
        assert len(hyps) == 2 and all(len(h) == 1 for h in hyps)
        encoded[task] = s2t.model.encode_speech(speech, lengths, video, video_lengths,
                                                torch.full((2,), MODES.index(task))).speech_embeds
    # Three different inputs to the LLM: the audio alone, the lips alone (silence heard), both.
    assert not torch.allclose(encoded["asr"], encoded["avsr"]) and not torch.allclose(encoded["vsr"], encoded["avsr"])
    # asr needs no video: the same result without it.
    s2t = Speech2Text(str(av_model_dir / "config.yaml"), str(av_model_dir / "model.pth"), DecodingOptions(task="asr"))
    with_video = s2t.decode(speech, lengths, video=video, video_lengths=video_lengths)
    assert [h[0].token_ids for h in s2t.decode(speech, lengths)] == [h[0].token_ids for h in with_video]


def test_speech2text_call_reads_lip_rois_as_arrays_or_npy_files(av_model_dir, tmp_path):
    speech, lengths, video, video_lengths = decode_inputs()
    s2t = Speech2Text(str(av_model_dir / "config.yaml"), str(av_model_dir / "model.pth"),
                      DecodingOptions(ctc_weight=0.5, max_length=4, beam_size=2))
    waves = [speech[i, :lengths[i]].numpy() for i in range(2)]
    rois = [video[i, :video_lengths[i]].numpy() for i in range(2)]
    np.save(tmp_path / "b.npy", rois[1])
    for task in ("vsr", "avsr"):
        search = s2t._search(DecodingOptions(ctc_weight=0.5, max_length=4, beam_size=2, task=task))
        expected = [s2t.text(h[0]) for h in s2t.decode(speech, lengths, search, video=video,
                                                        video_lengths=video_lengths)]
        assert s2t(waves, video=[rois[0], tmp_path / "b.npy"], task=task) == expected
        assert s2t(waves[1], video=str(tmp_path / "b.npy"), task=task) == expected[1]
    with pytest.raises(ValueError, match="one per recording"):
        s2t(waves, video=[rois[0]], task="avsr")
    with pytest.raises(ValueError, match="extract_lip_roi"):
        s2t(waves[0], video=tmp_path / "a.mp4", task="avsr")


def test_inference_reads_roi_scp_as_video(av_model_dir, tmp_path):
    from speechllm.bin.speechllm_inference import main

    speech, lengths, video, _ = decode_inputs()
    with open(tmp_path / "wav.scp", "w") as wav_scp, open(tmp_path / "roi.scp", "w") as roi_scp:
        for i, utt in enumerate(["a", "b"]):
            soundfile.write(tmp_path / f"{utt}.wav", speech[i, :lengths[i]].numpy(), RATE)
            np.save(tmp_path / f"{utt}.npy", video[i, : int(lengths[i]) * FPS // RATE].numpy())
            wav_scp.write(f"{utt} {tmp_path / f'{utt}.wav'}\n")
            roi_scp.write(f"{utt} {tmp_path / f'{utt}.npy'}\n")
    common = ["--train_config", str(av_model_dir / "config.yaml"), "--model_file", str(av_model_dir / "model.pth"),
              "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound", "--batch_size", "2",
              "--max_length", "3"]
    main(common + ["--data_path_and_name_and_type", f"{tmp_path / 'roi.scp'},video,npy", "--task", "vsr",
                   "--output_dir", str(tmp_path / "out")])
    assert len((tmp_path / "out" / "1best_recog" / "text").read_text().splitlines()) == 2
    with pytest.raises(ValueError, match=r"roi.scp,video,npy"):
        main(common + ["--task", "avsr", "--output_dir", str(tmp_path / "out2")])


def test_errors_name_the_fix(av_model_dir, tokens_dir, whisper_dir, tmp_path):  # noqa: F811
    speech, lengths, _, _ = decode_inputs()
    s2t = Speech2Text(str(av_model_dir / "config.yaml"), str(av_model_dir / "model.pth"), DecodingOptions(task="vsr"))
    with pytest.raises(ValueError, match=r"needs the lip ROIs.*roi.scp,video,npy"):
        s2t.decode(speech, lengths)
    with pytest.raises(ValueError, match=r"task must be one of"):
        DecodingOptions(task="lips")
    # An audio-only model refuses vsr and video.
    audio_only = SpeechLLMTask.get_parser().parse_args([
        "--output_dir", "unused", "--llm_conf", f"name_or_path={tokens_dir / 'llm'}", "--frontend_conf", "n_mels=40",
        "--speech_adapter_conf", "hidden_size=16"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(audio_only)))
    with pytest.raises(ValueError, match=r"audio-only .* decode it with task asr"):
        Speech2Text(str(tmp_path / "config.yaml"), None, DecodingOptions(task="vsr"))
    with pytest.raises(ValueError, match=r"visual_injection_conf makes"):
        SpeechLLMTask.build_model(SpeechLLMTask.get_parser().parse_args([
            "--output_dir", "unused", "--llm_conf", f"name_or_path={tokens_dir / 'llm'}",
            "--modality_dropout_conf", "{audio_only_prob: 1.0}"]))
    # Stage 1 options in a stage 2 config, a wrong key, a training batch without video, a trainable SFM.
    with pytest.raises(ValueError, match=r"audio_corruption_conf applies to stage 1"):
        SpeechLLMTask.build_model(av_args(tokens_dir, whisper_dir, "--audio_corruption_conf", "{}"))
    with pytest.raises(ValueError, match=r"visual_injection_conf: unknown key\(s\) \['evry'\]"):
        SpeechLLMTask.build_model(av_args(tokens_dir, whisper_dir, "--visual_injection_conf", "{evry: 2}"))
    with pytest.raises(ValueError, match=r"model_conf.task_prompts: unknown key\(s\) \['lips'\]"):
        SpeechLLMTask.build_model(av_args(tokens_dir, whisper_dir, "--model_conf", "task_prompts={lips: x}"))
    with pytest.raises(ValueError, match=r"SFM stays frozen: set frontend_conf.finetune: frozen"):
        SpeechLLMTask.build_model(av_args(tokens_dir, whisper_dir, "--frontend_conf", "finetune=full"))
    args = av_args(tokens_dir, whisper_dir)
    model = SpeechLLMTask.build_model(args)
    with pytest.raises(ValueError, match=r"trains on lip ROIs.*roi.scp,video,npy"):
        model(**make_batch(args, with_video=False))
