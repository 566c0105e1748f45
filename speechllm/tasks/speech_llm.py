"""SpeechLLMTask: ESPnet's task abstraction (AbsTask: its Trainer, iterators, DDP, config files) for speech LLMs.

A YAML config selects and configures each part, ESPnet style::

    frontend: default            # or s3prl (HuBERT/WavLM/wav2vec2 through ESPnet's S3prlFrontend; its
                                 # frontend_conf.finetune: frozen | lora | full, models/s3prl_frontend.py)
    frontend_conf: {n_mels: 80}
    encoder: conformer           # optional: none, transformer, conformer, e_branchformer, rnn
    encoder_conf: {output_size: 256, num_blocks: 6}
    speech_adapter: conv1d_mlp  # ("adapter" is taken by ESPnet for its own fine-tuning adapters)
    speech_adapter_conf: {downsample: 4, hidden_size: 512}
    llm_conf: {name_or_path: exp/llm_init, finetune: lora, lora_conf: {r: 16, alpha: 16}}
    model_conf: {ctc_weight: 0.3, prompt: "Transcribe the audio."}

Audio-visual (lip ROIs as the data name ``video``, ``roi.scp`` read as npy; models/visual_injection.py)::

    visual_frontend_conf: {size: tiny, output_size: 128}       # models/visual_frontend.VisualFrontend
    visual_injection_conf: {kind: gated_add, every: 1}         # into the frozen SFM's layers
    modality_dropout_conf: {audio_only_prob: 0.25, video_only_prob: 0.25, audio_visual_prob: 0.5}
    model_conf: {task_prompts: {asr: ..., vsr: ..., avsr: ...}}
    # stage 1: model_conf: {injection_pretraining: true}, audio_corruption_conf: {...}
"""
from __future__ import annotations

import argparse
import functools
import inspect
import logging
from pathlib import Path
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
from espnet2.asr.encoder.rnn_encoder import RNNEncoder
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.asr.specaug.specaug import SpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.layers.global_mvn import GlobalMVN
from espnet2.layers.utterance_mvn import UtteranceMVN
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import float_or_none, str_or_none

from speechllm.compat import ensure_s3prl_importable
from speechllm.data import augment
from speechllm.models.adapters import ADAPTERS, AbsAdapter
from speechllm.models.s3prl_frontend import S3prlFrontend
from speechllm.models.cross_attention import LLMCrossAttention, decoder_layers
from speechllm.models.fbank_frontend import FbankFrontend
from speechllm.models.embedding_ctc import EmbeddingCTC
from speechllm.models.hf_speech_encoder import HFSpeechEncoderFrontend
from speechllm.models.llm import load_causal_lm, load_tokenizer, rebuild_vocabulary
from speechllm.models.speech_llm import IGNORE_ID, SpeechLLM, injected_sfm
from speechllm.models.visual_frontend import VisualFrontend
from speechllm.models.visual_injection import (MODES, AudioCorruption, ModalityDropout, VisualInjection, checked_conf,
                                               sfm_layers, task_prompt)
from speechllm.tasks.conf_types import check_conf_keys
from speechllm.tasks.llm_task import DEFAULT_LLM_CONF, PretrainedLLMTask
from speechllm.text.tokenizers import (CTC_TOKEN_TYPES, BPELabelUnits, LLMVocabCTCTokenizer, SpeechLLMPreprocessor,
                                       label_tokenizer, make_ctc_tokenizer, prompt_label_ids)

ensure_s3prl_importable()

frontend_choices = ClassChoices(
    "frontend",
    classes=dict(default=FbankFrontend, s3prl=S3prlFrontend, hf_speech_encoder=HFSpeechEncoderFrontend),
    type_check=AbsFrontend,
    default="default",
)
specaug_choices = ClassChoices(
    "specaug", classes=dict(specaug=SpecAug), type_check=AbsSpecAug, default=None, optional=True
)
normalize_choices = ClassChoices(
    "normalize",
    classes=dict(global_mvn=GlobalMVN, utterance_mvn=UtteranceMVN),
    type_check=AbsNormalize,
    default=None,
    optional=True,
)
encoder_choices = ClassChoices(
    "encoder",
    classes=dict(transformer=TransformerEncoder, conformer=ConformerEncoder, e_branchformer=EBranchformerEncoder,
                 rnn=RNNEncoder),
    type_check=AbsEncoder,
    default=None,
    optional=True,
)
adapter_choices = ClassChoices("speech_adapter", classes=ADAPTERS, type_check=AbsAdapter, default="conv1d_mlp")

DEFAULT_MODEL_CONF = dict(
    ctc_weight=0.0,              # weight of the CTC head's loss (needs a CTC vocabulary); the LLM's: 1 - ctc_weight
    ctc_head="encoder",          # encoder: a linear CTC layer on the encoder output (ESPnet's CTC, ctc_conf);
                                 # llm_embeddings: on the speech embeddings, against the LLM's token embeddings
                                 # (models/embedding_ctc.py; needs ctc_token_type llm)
    ctc_blank_token="",          # ctc_head llm_embeddings: an LLM token whose embedding is the blank (e.g. the toy
                                 # LLM's <blank>, taught to read CTC paths); empty: a learned blank vector
    ctc_compress=False,          # the LLM reads one averaged encoder frame per CTC label (models/ctc_compress.py)
    matching_weight=0.0,         # weight of the speech-to-text-embedding matching loss (models/matching.py)
    lsm_weight=0.0,              # label smoothing of the LLM loss
    length_normalized_loss=False,  # false (ESPnet's default): losses summed over each utterance's tokens
    prompt="Transcribe the audio.",  # text before the speech embeddings (after BOS)
    prompt_suffix="",            # text after the speech embeddings
    prompt_variants=[],          # instruction variants: in training each utterance reads prompt or one of these,
                                 # drawn uniformly (decoding reads prompt, or the decoding option prompt)
    speech_positions="sequential",  # sequential: the speech takes one LLM position per embedding; aligned: the
                                 # speech is spread over the positions of the text it says, so a rotary LLM finds
                                 # each token's speech at a fixed relative distance (SpeechLLM.prefix_positions;
                                 # decoding takes the length from the CTC head over the LLM's tokens)
    interface="prefix",          # how the LLM reads the speech: prefix (embeddings between prompt and suffix) or
                                 # cross_attention (gated cross-attention blocks before its decoder layers; the
                                 # prefix holds the prompt only; models/cross_attention.py)
    cross_attention_conf={},     # interface cross_attention: every (a block before every N-th layer, 1), layers
                                 # (explicit layer indices instead), num_heads (8), ffn_size (0: no gated FFN),
                                 # gate_init (0: the LLM unchanged at the start; models/cross_attention.py says when
                                 # to open the gates a little)
    task_prompts={},             # audio-visual models: the prompt of each mode, {asr: ..., vsr: ..., avsr: ...}
                                 # (defaults: models/visual_injection.task_prompt); model_conf.prompt is unused
    injection_pretraining=False,  # audio-visual stage 1: only the visual frontend and injection train, to give
                                 # the frozen SFM's clean-audio output from corrupted audio + video (no LLM loss)
    visual_ctc_weight=0.0,       # audio-visual: weight of a CTC head on the lip encoder's output (the CTC head's
                                 # vocabulary), added in both stages: the lip encoder learns to read from the
                                 # transcript itself, not only through the frozen SFM (auto_avsr's visual CTC)
    # false (as in ESPnet's ASR configs) lets the statistics stage skip building the model and running the
    # frontend, which only a global_mvn needs; with a HuBERT frontend that saves a full pass.
    extract_feats_in_collect_stats=True,
)


CTC_HEADS = ("encoder", "llm_embeddings")
INTERFACES = ("prefix", "cross_attention")


# The audio-visual options, each the keyword arguments of its class (their defaults are the constructor's).
VISUAL_OPTIONS = ("visual_frontend_conf", "visual_injection_conf", "modality_dropout_conf", "audio_corruption_conf")


def is_audio_visual(args: argparse.Namespace) -> bool:
    """Whether the config builds an audio-visual model (configs written before the options existed have none)."""
    return getattr(args, "visual_injection_conf", None) is not None


def task_prompts(args: argparse.Namespace) -> List[str]:
    """The prompts of the modes (MODES order) of an audio-visual model, from model_conf.task_prompts."""
    model_conf = check_conf_keys("model_conf", args.model_conf, DEFAULT_MODEL_CONF)
    conf = checked_conf("model_conf.task_prompts", task_prompt, model_conf["task_prompts"], given=("mode",))
    return [task_prompt(mode, **conf) for mode in MODES]


def prompts(args: argparse.Namespace) -> List[str]:
    model_conf = check_conf_keys("model_conf", args.model_conf, DEFAULT_MODEL_CONF)
    extra = task_prompts(args) if is_audio_visual(args) else []
    return [model_conf["prompt"], model_conf["prompt_suffix"], *model_conf["prompt_variants"], *extra]


def load_label_tokenizer(args: argparse.Namespace):
    """The speech LLM's label units (speechllm.text.tokenizers.label_tokenizer) from its training args."""
    llm_conf = check_conf_keys("llm_conf", args.llm_conf, DEFAULT_LLM_CONF)
    return label_tokenizer(*label_units(args), load_tokenizer(llm_conf["name_or_path"]), prompts(args))


def label_units(args: argparse.Namespace) -> Tuple[str, Optional[str]]:
    """``--token_type`` and ``--bpemodel``; configs written before the options existed have neither: the LLM's."""
    return getattr(args, "token_type", "llm"), getattr(args, "bpemodel", None)


def ctc_token_type(args: argparse.Namespace) -> str:
    """``--ctc_token_type``; configs written before the option existed have none and mean ``bpe``."""
    return getattr(args, "ctc_token_type", "bpe")


# ESPnet data types that hold a frozen frontend's outputs (utils/dump_frontend.sh) rather than audio.
FEATURE_TYPES = ("kaldi_ark", "npy")


def speech_is_features(args: argparse.Namespace) -> bool:
    """Whether the training data's ``speech`` is dumped frontend output ``(frames, dims)`` rather than audio."""
    triples = (getattr(args, "train_data_path_and_name_and_type", None) or []) + \
        (getattr(args, "valid_data_path_and_name_and_type", None) or [])
    return any(name == "speech" and kind in FEATURE_TYPES for _, name, kind in triples)


def longest_train_seconds(args: argparse.Namespace) -> Optional[float]:
    """The longest training utterance in seconds, from the ``speech_shape`` file when the training speech is audio
    (its first dimension counts samples at the frontend's rate); None for dumped features, whose frame rate the
    shape file does not tell."""
    triples = getattr(args, "train_data_path_and_name_and_type", None) or []
    if not any(name == "speech" and kind in ("sound", "kaldi_ark_audio", "multi_columns_sound")
               for _, name, kind in triples):
        return None
    shape_files = [f for f in (getattr(args, "train_shape_file", None) or []) if Path(f).name == "speech_shape"]
    longest = 0
    for shape_file in shape_files:
        with open(shape_file, encoding="utf-8") as f:
            for line in f:
                fields = line.split(maxsplit=1)
                if len(fields) == 2:
                    longest = max(longest, int(fields[1].split(",")[0]))
    if not longest:
        return None
    fs = int((getattr(args, "frontend_conf", None) or {}).get("fs", 16000))
    return round(longest / fs, 2)


def build_part(option: str, cls: type, conf: Optional[dict], **given):
    """``cls(**given, **conf)`` with unknown or clashing keys reported by their config name before anything builds."""
    conf = dict(conf or {})
    parameters = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        valid = sorted(n for n in parameters if n != "self" and n not in given)
        unknown = [k for k in conf if k not in parameters]
        if unknown:
            raise ValueError(f"{option}_conf: unknown key(s) {unknown} for {cls.__name__}; valid keys: {valid}")
    clash = [k for k in conf if k in given]
    if clash:
        raise ValueError(f"{option}_conf: {clash} are set by speechllm itself for {cls.__name__}; remove them")
    return cls(**given, **conf)


def freeze_parameters(model: torch.nn.Module, prefixes: List[str]) -> None:
    """ESPnet's ``--freeze_param``, applied in build_model too: ESPnet applies it only when training starts, so
    without this, decoding (build_model_from_file) would rebuild e.g. ``frontend.upstream`` as trainable and expect
    its weights in the checkpoint, which leaves frozen pretrained weights out. A prefix matching nothing is an error,
    not a silently trained part."""
    for prefix in prefixes:
        matched = [p for name, p in model.named_parameters() if name == prefix or name.startswith(prefix + ".")]
        if not matched:
            parts = sorted({name.split(".")[0] for name, _ in model.named_parameters()})
            raise ValueError(f"--freeze_param {prefix}: matches no parameter; parameter names start with {parts} "
                             "(e.g. frontend.upstream, llm)")
        for p in matched:
            p.requires_grad = False


class FloatLipROIs:
    """``preprocess`` (if any), then the lip ROIs (``video``, uint8) as float32 on the same 0..255 scale, which the
    visual frontend reads alike: ESPnet's dataset takes float and int arrays only. Nothing else changes."""

    def __init__(self, preprocess: Optional[Callable] = None):
        self.preprocess = preprocess

    def __call__(self, uid: str, data: Dict[str, object]) -> Dict[str, object]:
        data = self.preprocess(uid, data) if self.preprocess is not None else data
        if "video" not in data:
            return data
        return {**data, "video": np.asarray(data["video"], dtype=np.float32)}


def check_visual_options(args: argparse.Namespace, model_conf: dict) -> Optional[Dict[str, dict]]:
    """The audio-visual options completed with their classes' defaults (None for an audio-only model); an option
    without the others it needs, or a wrong key, is an error naming it."""
    given = {option: getattr(args, option, None) for option in VISUAL_OPTIONS}
    if not is_audio_visual(args):
        stray = [option for option, conf in given.items() if conf is not None]
        stray += ["model_conf.task_prompts"] if model_conf["task_prompts"] else []
        stray += ["model_conf.injection_pretraining"] if model_conf["injection_pretraining"] else []
        if stray:
            raise ValueError(f"{', '.join(stray)} configure an audio-visual model, which visual_injection_conf "
                             "makes: add visual_injection_conf (and visual_frontend_conf) or remove them")
        return None
    if given["audio_corruption_conf"] is not None and not model_conf["injection_pretraining"]:
        raise ValueError("audio_corruption_conf applies to stage 1 only (model_conf.injection_pretraining: true); "
                         "remove it from the recognition config")
    if args.frontend is None and getattr(args, "encoder", None) is None:
        raise ValueError("visual_injection_conf: the model has no frontend or encoder to inject into")
    classes = dict(visual_frontend_conf=VisualFrontend, visual_injection_conf=VisualInjection,
                   modality_dropout_conf=ModalityDropout, audio_corruption_conf=AudioCorruption)
    visual_given = ("visual_size", "sfm_hidden_size", "sfm_num_layers")  # read from the parts by for_sfm
    return {option: checked_conf(option, cls, given[option], visual_given if cls is VisualInjection else ())
            for option, cls in classes.items()}


def freeze_for_visual_training(model: SpeechLLM, sfm: torch.nn.Module, injection_pretraining: bool) -> None:
    """The SFM's injected layers never train (an error, not a silent change, if the config trains them); in stage 1
    (injection pretraining) nothing but the visual frontend, its CTC head and injection does."""
    trained = [name for name, p in sfm_layers(sfm).named_parameters() if p.requires_grad]
    if trained:
        raise ValueError(f"visual_injection_conf: the SFM's layers would train ({trained[0]}, ...); the injected "
                         "SFM stays frozen: set frontend_conf.finetune: frozen (hf_speech_encoder) or add the "
                         "encoder to freeze_param")
    if injection_pretraining:
        for name, p in model.named_parameters():
            if not name.startswith(("visual_frontend.", "visual_ctc.", "visual_injection.")):
                p.requires_grad = False


class SpeechLLMTask(PretrainedLLMTask):
    class_choices_list = [frontend_choices, specaug_choices, normalize_choices, encoder_choices, adapter_choices]

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="Task related")
        cls.add_llm_arguments(group, DEFAULT_MODEL_CONF, "SpeechLLM")
        group.add_argument("--ctc_conf", action=NestedDictAction, default=get_default_kwargs(CTC),
                           help="The keyword arguments of ESPnet's CTC class")
        group.add_argument("--ctc_bpemodel", type=str_or_none, default=None,
                           help="SentencePiece model of the CTC head's vocabulary (no CTC head if not given)")
        group.add_argument("--longest_train_seconds", type=float_or_none, default=None,
                           help="The longest training utterance (seconds); filled in from the training speech_shape "
                                "when training on audio. Decoding cuts longer recordings into segments no longer "
                                "than this, by default (a model trained on short utterances loops on long ones)")
        group.add_argument("--ctc_token_type", choices=CTC_TOKEN_TYPES, default="bpe",
                           help="The CTC head's vocabulary: bpe (--ctc_bpemodel) or llm (the LLM's own tokens, "
                                "which joint CTC/LLM decoding needs)")
        group.add_argument("--visual_frontend_conf", action=NestedDictAction, default=None,
                           help="Audio-visual: the lip encoder (models/visual_frontend.VisualFrontend: output_size, "
                                "size resnet18|tiny, activation, init_checkpoint, checkpoint_prefix, input_pool, "
                                "temporal_layers, temporal_kernel); with "
                                "visual_injection_conf it makes the model audio-visual (data name 'video')")
        group.add_argument("--visual_injection_conf", action=NestedDictAction, default=None,
                           help="Audio-visual: injection into the frozen SFM's layers (models/visual_injection."
                                "VisualInjection: layers, every, kind gated_add|cross_attention, num_heads, window, "
                                "visual_fps, sfm_fps, resample, dropout)")
        group.add_argument("--modality_dropout_conf", action=NestedDictAction, default=None,
                           help="Audio-visual training: audio_only_prob, video_only_prob, audio_visual_prob, "
                                "video_only_audio silence|noise, noise_std (models/visual_injection.ModalityDropout)")
        group.add_argument("--audio_corruption_conf", action=NestedDictAction, default=None,
                           help="Audio-visual stage 1 (model_conf.injection_pretraining): clean_prob, noise_prob, "
                                "mask_prob, missing_prob, snr_low, snr_high, mask_fraction "
                                "(models/visual_injection.AudioCorruption)")
        group = parser.add_argument_group(description="Preprocess related")
        augment.add_arguments(group)
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        if args.longest_train_seconds is None and not args.collect_stats:
            args.longest_train_seconds = longest_train_seconds(args)  # written into config.yaml with the rest
        super().main_worker(args)

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]], Tuple[List[str], Dict[str, torch.Tensor]]
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=IGNORE_ID)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        if not args.use_preprocessor:
            return FloatLipROIs()
        augmentation = augment.SpeechAugmentation.from_args(args) if train else None
        if augmentation is not None and speech_is_features(args):
            raise ValueError("--rir_scp/--noise_scp change the training audio, but the training speech is dumped "
                             "frontend output: train from audio (--dump_frontend false) or drop them")
        return FloatLipROIs(SpeechLLMPreprocessor(
            train=train, load_label_tokenizer=functools.partial(load_label_tokenizer, args),
            ctc_bpemodel=args.ctc_bpemodel, ctc_token_type=ctc_token_type(args),
            speech_is_features=speech_is_features(args), augmentation=augmentation))

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech",) if inference else ("speech", "text")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("video",)  # lip ROIs (roi.scp, read as npy: frames x 96 x 96 uint8) of an audio-visual model

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> SpeechLLM:
        llm_conf = cls.checked_llm_conf(args)
        model_conf = check_conf_keys("model_conf", args.model_conf, DEFAULT_MODEL_CONF)
        # Everything cheap is checked before the LLM (possibly GBs) is loaded.
        if model_conf["interface"] not in INTERFACES:
            raise ValueError(f"model_conf.interface: '{model_conf['interface']}' is not one of {list(INTERFACES)}")
        if model_conf["cross_attention_conf"] and model_conf["interface"] != "cross_attention":
            raise ValueError("model_conf.cross_attention_conf applies to interface cross_attention only; remove it "
                             "or set model_conf.interface: cross_attention")
        visual = check_visual_options(args, model_conf)
        llm_tokenizer = load_tokenizer(llm_conf["name_or_path"])
        tokenizer = label_tokenizer(*label_units(args), llm_tokenizer, prompts(args))
        ctc_tokenizer = make_ctc_tokenizer(ctc_token_type(args), args.ctc_bpemodel, tokenizer)
        if model_conf["ctc_weight"] > 0 and ctc_tokenizer is None:
            raise ValueError("model_conf.ctc_weight > 0 needs a CTC vocabulary: --ctc_bpemodel (stage 5 of the "
                             "recipe trains it) or --ctc_token_type llm")

        frontend = None
        input_size = None
        if args.frontend is not None:
            frontend = build_part("frontend", frontend_choices.get_class(args.frontend), args.frontend_conf)
            input_size = frontend.output_size()
        specaug = (build_part("specaug", specaug_choices.get_class(args.specaug), args.specaug_conf)
                   if args.specaug else None)
        normalize = (build_part("normalize", normalize_choices.get_class(args.normalize), args.normalize_conf)
                     if args.normalize else None)
        encoder = None
        encoder_size = input_size
        if args.encoder is not None:
            encoder = build_part("encoder", encoder_choices.get_class(args.encoder), args.encoder_conf,
                                 input_size=input_size)
            encoder_size = encoder.output_size()

        llm = load_causal_lm(llm_conf["name_or_path"], finetune=llm_conf["finetune"],
                             lora_conf=llm_conf["lora_conf"], dtype=llm_conf["dtype"],
                             gradient_checkpointing=llm_conf["gradient_checkpointing"])
        if isinstance(tokenizer, BPELabelUnits):
            rebuild_vocabulary(llm, llm_tokenizer, tokenizer)
        adapter = build_part("speech_adapter", adapter_choices.get_class(args.speech_adapter), args.speech_adapter_conf,
                             input_size=encoder_size, output_size=llm.config.hidden_size)
        ctc = None
        cross_attention = None
        if model_conf["interface"] == "cross_attention":
            cross_attention = build_part("model_conf.cross_attention", LLMCrossAttention,
                                         model_conf["cross_attention_conf"], llm_hidden_size=llm.config.hidden_size,
                                         llm_num_layers=len(decoder_layers(llm)))
        if model_conf["ctc_head"] not in CTC_HEADS:
            raise ValueError(f"model_conf.ctc_head: '{model_conf['ctc_head']}' is not one of {list(CTC_HEADS)}")
        if model_conf["ctc_blank_token"] and model_conf["ctc_head"] != "llm_embeddings":
            raise ValueError("model_conf.ctc_blank_token applies to ctc_head llm_embeddings only; remove it")
        if ctc_tokenizer is not None and model_conf["ctc_head"] == "llm_embeddings":
            if not isinstance(ctc_tokenizer, LLMVocabCTCTokenizer):
                raise ValueError("model_conf.ctc_head llm_embeddings scores the LLM's own tokens: set "
                                 "ctc_token_type: llm (and no --ctc_bpemodel)")
            blank_token = model_conf["ctc_blank_token"]
            if blank_token and isinstance(tokenizer, BPELabelUnits):
                raise ValueError("model_conf.ctc_blank_token names an LLM token, but --token_type bpe rebuilt the "
                                 "LLM's vocabulary: remove it (a learned blank vector is used)")
            blank_token_id = tokenizer.convert_tokens_to_ids(blank_token) if blank_token else None
            if blank_token and blank_token_id in (None, tokenizer.unk_token_id):
                raise ValueError(f"model_conf.ctc_blank_token: '{blank_token}' is not a token of the LLM's tokenizer "
                                 "(the toy LLM has <blank> when its config sets pretrain_ctc_paths > 0)")
            ctc = EmbeddingCTC(ctc_tokenizer.vocab_size, lambda: llm.get_input_embeddings().weight, blank_token_id)
        elif ctc_tokenizer is not None:
            ctc = build_part("ctc", CTC, args.ctc_conf, odim=ctc_tokenizer.vocab_size,
                             encoder_output_size=encoder_size)

        visual_frontend = visual_injection = visual_ctc = None
        if visual is not None:
            visual_frontend = VisualFrontend(**visual["visual_frontend_conf"])
            sfm = injected_sfm(frontend, encoder)
            visual_injection = VisualInjection.for_sfm(sfm, visual_frontend.output_size(),
                                                       visual["visual_injection_conf"])
        if model_conf["visual_ctc_weight"] > 0:
            if visual is None or ctc_tokenizer is None:
                raise ValueError("model_conf.visual_ctc_weight > 0 needs an audio-visual model (visual_frontend_conf "
                                 "and visual_injection_conf) with a CTC vocabulary (ctc_token_type or "
                                 "--ctc_bpemodel): its CTC head reads the lip encoder's output")
            visual_ctc = build_part("ctc", CTC, args.ctc_conf, odim=ctc_tokenizer.vocab_size,
                                    encoder_output_size=visual_frontend.output_size())
        model = SpeechLLM(
            frontend=frontend, specaug=specaug, normalize=normalize, encoder=encoder, adapter=adapter, llm=llm,
            bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id,
            prompt_ids=prompt_label_ids(tokenizer, model_conf["prompt"]),
            prompt_suffix_ids=prompt_label_ids(tokenizer, model_conf["prompt_suffix"], "model_conf.prompt_suffix"),
            prompt_variant_ids=[prompt_label_ids(tokenizer, p, "model_conf.prompt_variants")
                                for p in model_conf["prompt_variants"]],
            ctc=ctc, ctc_weight=model_conf["ctc_weight"], ctc_compress=model_conf["ctc_compress"],
            ctc_shares_llm_vocab=isinstance(ctc_tokenizer, LLMVocabCTCTokenizer),
            matching_weight=model_conf["matching_weight"], lsm_weight=model_conf["lsm_weight"],
            length_normalized_loss=model_conf["length_normalized_loss"], cross_attention=cross_attention,
            visual_frontend=visual_frontend, visual_injection=visual_injection,
            modality_dropout=ModalityDropout(**visual["modality_dropout_conf"]) if visual else None,
            task_prompt_ids=[prompt_label_ids(tokenizer, p, "model_conf.task_prompts") for p in task_prompts(args)]
            if visual else (),
            injection_pretraining=model_conf["injection_pretraining"],
            visual_ctc=visual_ctc, visual_ctc_weight=model_conf["visual_ctc_weight"],
            audio_corruption=AudioCorruption(**visual["audio_corruption_conf"]) if visual else None,
            speech_positions=model_conf["speech_positions"],
        )
        freeze_param = getattr(args, "freeze_param", None) or []
        if getattr(frontend, "finetune", "") in ("lora", "full") and any(
                "frontend.upstream".startswith(p) or p.startswith("frontend.upstream") for p in freeze_param):
            raise ValueError(f"frontend_conf.finetune {frontend.finetune} trains weights inside frontend.upstream, "
                             f"which --freeze_param {freeze_param} freezes again: drop that --freeze_param (the "
                             "finetune option already freezes what it does not train)")
        freeze_parameters(model, freeze_param)
        if visual is not None:
            freeze_for_visual_training(model, sfm, model_conf["injection_pretraining"])
        for part, trainable, total in model.trainable_summary():
            logging.info(f"{part}: {trainable:,} of {total:,} parameters train")
        return model
