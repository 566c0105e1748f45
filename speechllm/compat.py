"""The one place where speechllm bends third-party code to run on newer stacks.

s3prl 0.4.18 calls ``torchaudio.set_audio_backend`` and imports ``torchaudio.sox_effects`` when it is imported;
torchaudio 2.9 removed both, so on newer stacks (the GPU machines carry torch/torchaudio 2.11) ``import s3prl``
fails before any model loads. s3prl only needs them for its own dataset loaders, which speechllm never uses: the
upstream models read tensors we give them. We therefore restore a no-op ``set_audio_backend`` and a
``sox_effects`` module whose functions raise a clear error if anyone does call them.
"""
from __future__ import annotations

import sys
import types


def _sox_effects_removed(*_args, **_kwargs):
    raise RuntimeError(
        "torchaudio.sox_effects was removed in torchaudio 2.9; speechllm's s3prl shim does not emulate it. "
        "Use torchaudio<2.9 (tools/constraints.txt pins 2.8) if you need s3prl's sox-based data loaders."
    )


def ensure_s3prl_importable() -> None:
    """Make ``import s3prl`` work on torchaudio >= 2.9. Safe to call many times; does nothing on older torchaudio."""
    try:
        import torchaudio
    except Exception:  # torchaudio missing or broken (e.g. a CUDA build beside a CPU torch): s3prl reports it
        return
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda backend=None: None
    try:
        import torchaudio.sox_effects  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        module = types.ModuleType("torchaudio.sox_effects")
        module.apply_effects_tensor = _sox_effects_removed
        module.apply_effects_file = _sox_effects_removed
        sys.modules["torchaudio.sox_effects"] = module
        torchaudio.sox_effects = module
