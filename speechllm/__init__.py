"""speechllm: an ESPnet-style recipe toolkit for LLM-based speech recognition."""

__version__ = "0.1.0"
