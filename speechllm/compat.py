"""The one place where speechllm bends third-party code: s3prl on newer stacks, and imports that must neither
download nor print (see "Imports that must neither reach the network nor print on stdout" below).

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


# ---------------------------------------------------------------------------------------------------------------
# Imports that must neither reach the network nor print on stdout.
#
# ESPnet's data pipeline (espnet2.train.collate_fn -> preprocessor -> text.phoneme_tokenizer) imports g2p_en at import
# time, and g2p_en calls nltk.download() when its tagger and dictionary are not installed: importing speechllm's task
# tried to download from GitHub (and waited for the network to fail). speechllm never uses g2p_en's phonemizer, so
# g2p_en is registered as a deferred module: `import g2p_en` succeeds at once and the module runs (downloads and
# all) only when someone uses one of its own attributes. (importlib's LazyLoader is not enough: it runs the module on
# any attribute access, and torch's op registration walks sys.modules through inspect.getmodule, which reads every
# module's __file__.) ESPnet's attention module prints "Failed to import Flash Attention,
# using ESPnet default: ..." on stdout when flash_attn is absent; that notice goes to the log instead.

LAZY_MODULES = ("g2p_en",)
QUIET_MODULES = ("espnet.nets.pytorch_backend.transformer.attention",)
_notices: list = []
_deferred_loaders: dict = {}  # module name -> the real loader that will run it
_hooks_installed = False


class _QuietLoader:
    """Runs a module with its stdout captured; what it printed becomes a log notice."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # get_source, get_filename, is_package, ...: the wrapped loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        import contextlib
        import io

        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            self.loader.exec_module(module)
        for line in captured.getvalue().splitlines():
            if line.strip():
                _notice(f"{module.__name__}: {line.strip()}")


class _DeferredModule(types.ModuleType):
    """A module whose code has not run yet: its import attributes (__file__, __spec__, ...) are there; the first
    other attribute asked for runs the module (by its real loader) and is then looked up as usual."""

    def __getattr__(self, name):  # only reached for attributes the module does not have yet
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        self.__class__ = types.ModuleType
        _deferred_loaders.pop(self.__name__).exec_module(self)
        return getattr(self, name)


class _DeferredLoader:
    """Creates the module but runs none of its code (see _DeferredModule)."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        _deferred_loaders[module.__name__] = self.loader
        module.__class__ = _DeferredModule


def _notice(text: str) -> None:
    import logging

    logger = logging.getLogger("speechllm.compat")
    if logging.getLogger().handlers or logger.handlers:
        logger.info(text)
    else:  # imports happen before the entry point configures logging: keep it for log_import_notices()
        _notices.append(text)


def log_import_notices() -> None:
    """Log (at INFO) what the quiet imports printed before logging was set up; the trainer calls this."""
    import logging

    while _notices:
        logging.getLogger("speechllm.compat").info(_notices.pop(0))


class _ImportHooks:
    """A meta-path finder for LAZY_MODULES and QUIET_MODULES only; every other import is left alone."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in LAZY_MODULES and fullname not in QUIET_MODULES:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None  # not installed: the normal import reports it
        spec.loader = _DeferredLoader(spec.loader) if fullname in LAZY_MODULES else _QuietLoader(spec.loader)
        return spec


def install_import_hooks() -> None:
    """Called by ``speechllm/__init__.py``: cheap (no third-party import), safe to call many times."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    sys.meta_path.insert(0, _ImportHooks())
