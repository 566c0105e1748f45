"""Loading the decoder-only LLM (and its tokenizer) and choosing what of it trains.

The LLM comes from a local folder (``save_pretrained`` layout), a hub name (for users who have a hub), or a GGUF
file (dequantised by transformers; needs the ``gguf`` package). ``finetune`` decides what trains:
``frozen`` (nothing), ``lora`` (peft LoRA adapters only) or ``full`` (every weight).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch

from speechllm.models.weight_files import naming_damaged_files

FINETUNE_MODES = ("frozen", "lora", "full")


@dataclasses.dataclass(frozen=True)
class LoraOptions:
    """peft LoRA settings; the defaults follow the integration paper's LLM setting (r=16, alpha=16)."""

    r: int = 16
    alpha: int = 16
    dropout: float = 0.05
    target_modules: Tuple[str, ...] = ("q_proj", "v_proj")

    @classmethod
    def from_dict(cls, conf: Optional[dict], where: str = "llm_conf.lora_conf") -> "LoraOptions":
        conf = dict(conf or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(conf) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
        if "target_modules" in conf:
            conf["target_modules"] = tuple(conf["target_modules"])
        options = cls(**conf)
        if options.r <= 0:
            raise ValueError(f"{where}.r must be positive, got {options.r}")
        return options


def split_gguf_path(name_or_path: str) -> Tuple[str, Optional[str]]:
    """``dir/model.gguf`` -> (``dir``, ``model.gguf``); anything else -> (name_or_path, None)."""
    if name_or_path.endswith(".gguf"):
        path = Path(name_or_path)
        return str(path.parent), path.name
    return name_or_path, None


def _check_reachable(name_or_path: str) -> None:
    """Fail early, naming the option, when the LLM can be neither found locally nor fetched from a hub."""
    if Path(name_or_path).expanduser().exists():
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false")
    looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.endswith(".gguf")
    if offline or looks_local:
        raise FileNotFoundError(
            f"llm_conf.name_or_path: '{name_or_path}' is not a local folder or GGUF file"
            + (" (and HF_HUB_OFFLINE=1 forbids the hub)" if offline else "")
            + ". Give the folder written by save_pretrained(), a .gguf file, or a hub name with the hub reachable."
        )


def check_is_causal_lm(folder: str) -> None:
    """A local model folder must hold a decoder-only (causal) LM: say so, naming the option, before loading it."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if not (Path(folder) / "config.json").is_file():
        raise FileNotFoundError(f"llm_conf.name_or_path: '{folder}' has no config.json; give the folder written by "
                                "save_pretrained() of a causal LM (Qwen2, Llama, SmolLM, ...) or a .gguf file")
    config = AutoConfig.from_pretrained(folder)
    # (Whisper's decoder loads as a causal LM too, but a speech model's folder here is a mistake.)
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"llm_conf.name_or_path: '{folder}' is a '{config.model_type}' model, not a decoder-only "
                         "LLM that transformers' AutoModelForCausalLM loads (e.g. qwen2, llama); did you give the "
                         "speech encoder's folder?")


LABEL_UNITS_FILE = "label_units.yaml"  # in an LLM folder whose label units are a corpus BPE (bin/export_lm.py)


def load_tokenizer(name_or_path: str):
    """The LLM's own tokenizer (also the one inside a GGUF file), with a pad id guaranteed; for a folder exported
    with its own label units (``label_units.yaml``: a corpus BPE), those units."""
    from transformers import AutoTokenizer

    _check_reachable(name_or_path)
    units_file = Path(name_or_path) / LABEL_UNITS_FILE
    if units_file.is_file():
        import yaml

        from speechllm.text.tokenizers import BPELabelUnits

        units = yaml.safe_load(units_file.read_text(encoding="utf-8"))
        return BPELabelUnits(str(Path(name_or_path) / units["bpemodel"]),
                             load_tokenizer(str(Path(name_or_path) / units["llm_tokenizer"])), units["kept_llm_ids"])
    folder, gguf_file = split_gguf_path(name_or_path)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    with naming_damaged_files(name_or_path, "llm_conf.name_or_path"):
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"the tokenizer of '{name_or_path}' has no EOS token; speechllm needs one to end a transcript")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out everywhere; any id will do
    return tokenizer


def load_causal_lm(
    name_or_path: str,
    finetune: str = "lora",
    lora_conf: Optional[dict] = None,
    dtype: str = "float32",
    gradient_checkpointing: bool = False,
) -> torch.nn.Module:
    """Load a HuggingFace causal LM and set which of its parameters train (see module doc)."""
    if finetune not in FINETUNE_MODES:
        raise ValueError(f"llm_conf.finetune: '{finetune}' is not one of {FINETUNE_MODES}")
    lora = LoraOptions.from_dict(lora_conf) if finetune == "lora" else None
    if finetune != "lora" and lora_conf:
        raise ValueError(f"llm_conf.lora_conf is set but llm_conf.finetune is '{finetune}'; set finetune: lora")
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"llm_conf.dtype: '{dtype}' is not a torch dtype (float32, bfloat16, float16)")
    _check_reachable(name_or_path)

    from transformers import AutoModelForCausalLM

    folder, gguf_file = split_gguf_path(name_or_path)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    if not gguf_file and Path(folder).is_dir():
        check_is_causal_lm(folder)
    with naming_damaged_files(name_or_path, "llm_conf.name_or_path"):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **kwargs)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return set_finetune_mode(model, finetune, lora)


def convert_gguf(gguf_path: str, out_dir: str) -> Path:
    """Dequantise a GGUF LLM once into a transformers folder (float32 safetensors and its tokenizer).

    transformers dequantises a GGUF file on every load (SmolLM2-135M: about 23 s, against under 1 s for the folder),
    and every training, statistics and decoding job loads the LLM. The folder is written beside and renamed into
    place, so an interrupted conversion never leaves a folder that looks complete."""
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    tokenizer = load_tokenizer(gguf_path)
    quantized = load_causal_lm(gguf_path, finetune="full")
    settings = quantized.config.to_dict()
    settings.pop("quantization_config", None)  # a dequantised model saves as a plain one
    model = AutoModelForCausalLM.from_config(type(quantized.config).from_dict(settings))
    model.load_state_dict(quantized.state_dict())
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial.", dir=out.parent))
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def set_finetune_mode(model: torch.nn.Module, finetune: str, lora: Optional[LoraOptions],
                      where: str = "llm_conf", in_place: bool = False) -> torch.nn.Module:
    """``full``: every weight trains; ``frozen``: none; ``lora``: peft LoRA adapters on ``lora.target_modules``.
    ``in_place``: the adapters are injected into ``model`` itself (peft.inject_adapter_in_model) instead of a
    PeftModel around it, for modules that are not transformers models (an S3PRL upstream)."""
    if finetune == "full":
        model.requires_grad_(True)
        return model
    model.requires_grad_(False)
    if finetune == "frozen":
        return model
    from peft import LoraConfig, get_peft_model, inject_adapter_in_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in lora.target_modules if m not in present]
    if missing:
        raise ValueError(
            f"{where}.lora_conf.target_modules: {missing} not found in {type(model).__name__}; "
            f"its linear layers include {sorted(n for n in present if 'proj' in n)}"
        )
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
    )
    if not in_place:
        return get_peft_model(model, config)
    model = inject_adapter_in_model(config, model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return model


def trainable_parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def token_ids(tokenizer, text: str) -> Sequence[int]:
    """Ids of ``text`` without the special tokens the tokenizer may add (speechllm adds BOS/EOS itself)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def rebuild_vocabulary(llm: torch.nn.Module, llm_tokenizer, units) -> None:
    """Give ``llm`` the label units ``units`` (speechllm.text.tokenizers.BPELabelUnits): a new input embedding and
    output layer (tied again if the LLM ties them), a piece's row initialised from the mean of the LLM's rows of the
    tokens that spell it, a kept LLM token's row copied. The new layers train whatever ``finetune`` froze."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm  # under peft's wrapper
    old_input = base.get_input_embeddings().weight.detach()
    old_output_layer = base.get_output_embeddings()
    tied = old_output_layer is None or old_output_layer.weight is base.get_input_embeddings().weight
    old_output = old_input if tied else old_output_layer.weight.detach()
    spellings = [token_ids(llm_tokenizer, text) if text else [] for text in units.piece_spellings()]
    spellings += [[i] for i in units.kept_llm_ids]

    def rows(old: torch.Tensor) -> torch.Tensor:
        mean = old.mean(0)
        return torch.stack([old[ids].mean(0) if ids else mean for ids in spellings])

    embedding = torch.nn.Embedding(len(spellings), old_input.size(1), dtype=old_input.dtype,
                                   device=old_input.device)
    embedding.weight.data.copy_(rows(old_input))
    base.set_input_embeddings(embedding)
    output = torch.nn.Linear(old_input.size(1), len(spellings), bias=False, dtype=old_input.dtype,
                             device=old_input.device)
    if tied:
        output.weight = embedding.weight
    else:
        output.weight.data.copy_(rows(old_output))
    base.set_output_embeddings(output)
    base.config.vocab_size = len(spellings)
