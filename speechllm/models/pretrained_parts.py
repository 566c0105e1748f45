"""Checkpoints without the frozen weights of pretrained parts.

A model that wraps pretrained parts (an LLM, a pretrained speech frontend) rebuilds their frozen weights from their
source in ``build_model``, so its checkpoints leave them out: a LoRA-tuned 7B LLM then costs megabytes per epoch,
not 14 GB. Loading is strict about everything else: a checkpoint of another config is an error, not a silent
partial load.
"""
from __future__ import annotations

from typing import List, Tuple

import torch

from speechllm.models.llm import trainable_parameter_count


class LeavesOutFrozenPretrained(torch.nn.Module):
    """Mixin for an ``nn.Module`` whose children named in ``PRETRAINED_PARTS`` (prefixes with a dot) are pretrained."""

    PRETRAINED_PARTS: Tuple[str, ...] = ("llm.",)

    def frozen_pretrained_keys(self, prefix: str = "") -> List[str]:
        return [prefix + name for name, p in self.named_parameters(remove_duplicate=False)  # tied weights too
                if not p.requires_grad and name.startswith(self.PRETRAINED_PARTS)]

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in self.frozen_pretrained_keys(prefix):
            state.pop(key, None)
        return state

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict:
            rebuilt = set(self.frozen_pretrained_keys())
            missing = [k for k in result.missing_keys if k not in rebuilt]
            if missing or result.unexpected_keys:
                raise RuntimeError(
                    f"checkpoint does not match the model built from its config: missing {missing[:5]} "
                    f"({len(missing)}), unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)}); "
                    "was it trained with another config (encoder, adapter, LoRA settings, label units)?"
                )
        return result

    def trainable_summary(self) -> List[Tuple[str, int, int]]:
        """(part, trainable, total) parameter counts for the log: what is frozen is visible at a glance."""
        return [(name, trainable_parameter_count(child), sum(p.numel() for p in child.parameters()))
                for name, child in self.named_children()]
