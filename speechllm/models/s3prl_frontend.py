"""ESPnet's ``S3prlFrontend`` (HuBERT, WavLM, wav2vec2 through S3PRL, a weighted sum of their layers) with the
upstream's fine-tuning chosen in its config, as ``hf_speech_encoder`` chooses it: ``frontend_conf.finetune``
``frozen``, ``lora`` (peft LoRA on ``lora_conf.target_modules``, by default r=8 alpha=16 on q_proj and v_proj, as
Pham et al. tune their encoders) or ``full``. Left empty (the default), it is ESPnet's class unchanged: the
upstream trains unless ``--freeze_param frontend.upstream`` freezes it.

The adapters are injected into the upstream in place, so the module tree (and ESPnet's ``pretrained_params``) keep
their names; frozen upstream weights stay out of checkpoints (models/pretrained_parts.py), the LoRA weights are
saved.
"""
from __future__ import annotations

from typing import Optional, Union

from espnet2.asr.frontend.s3prl import S3prlFrontend as ESPnetS3prlFrontend
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet.nets.pytorch_backend.frontends.frontend import Frontend

from speechllm.models.hf_speech_encoder import ENCODER_FINETUNE, ENCODER_LORA_DEFAULTS
from speechllm.models.llm import LoraOptions, set_finetune_mode


class S3prlFrontend(ESPnetS3prlFrontend):
    def __init__(
        self,
        fs: Union[int, str] = 16000,
        frontend_conf: Optional[dict] = get_default_kwargs(Frontend),
        download_dir: Optional[str] = None,
        multilayer_feature: bool = False,
        layer: int = -1,
        finetune: str = "",
        lora_conf: Optional[dict] = None,
    ):
        # Checked before the upstream (possibly GBs) is loaded.
        if finetune and finetune not in ENCODER_FINETUNE:
            raise ValueError(f"frontend_conf.finetune: '{finetune}' is not one of {list(ENCODER_FINETUNE)} (or empty: "
                             "ESPnet's behaviour, the upstream trains unless --freeze_param frontend.upstream)")
        if lora_conf and finetune != "lora":
            raise ValueError(f"frontend_conf.lora_conf is set but frontend_conf.finetune is '{finetune}'; set "
                             "finetune: lora")
        lora = (LoraOptions.from_dict({**ENCODER_LORA_DEFAULTS, **(lora_conf or {})}, "frontend_conf.lora_conf")
                if finetune == "lora" else None)
        super().__init__(fs=fs, frontend_conf=frontend_conf, download_dir=download_dir,
                         multilayer_feature=multilayer_feature, layer=layer)
        self.finetune = finetune
        if finetune:
            set_finetune_mode(self.upstream, finetune, lora, where="frontend_conf", in_place=True)
