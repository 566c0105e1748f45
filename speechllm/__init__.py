"""speechllm: an ESPnet-style recipe toolkit for LLM-based speech recognition."""
from speechllm.compat import install_import_hooks

# Before anything imports ESPnet: g2p_en must not download on import, ESPnet's flash-attention notice goes to the log.
install_import_hooks()

__version__ = "0.1.0"


def __getattr__(name):
    # `from speechllm import Speech2Text` without making `import speechllm` load torch and ESPnet.
    if name == "Speech2Text":
        from speechllm.speech2text import Speech2Text

        return Speech2Text
    raise AttributeError(f"module 'speechllm' has no attribute '{name}'")
