"""A pretrained causal LLM fine-tuned on transcripts: the LM of the combination paradigm (rescoring, shallow and
delayed fusion with an acoustic model). It reads ``[BOS] + text`` and is trained to predict ``text + [EOS]``."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from speechllm.models.pretrained_parts import LeavesOutFrozenPretrained

IGNORE_ID = -1  # padding value of integer sequences in ESPnet's collate function


class CausalLM(LeavesOutFrozenPretrained, AbsESPnetModel):
    def __init__(self, llm: torch.nn.Module, bos_id: Optional[int], eos_id: int, lsm_weight: float = 0.0,
                 length_normalized_loss: bool = False):
        super().__init__()
        self.llm = llm
        self.bos_id = eos_id if bos_id is None else bos_id  # GPT-2-style LLMs start from their end token
        self.eos_id = eos_id
        self.lsm_weight = lsm_weight
        self.length_normalized_loss = length_normalized_loss

    def forward(self, text: torch.Tensor, text_lengths: torch.Tensor,
                **kwargs) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        batch = text.size(0)
        width = int(text_lengths.max()) + 1
        positions = torch.arange(width, device=text.device)[None]
        targets = torch.full((batch, width), IGNORE_ID, dtype=torch.long, device=text.device)
        targets[:, :-1] = text[:, : width - 1]
        targets[positions == text_lengths[:, None]] = self.eos_id
        inputs = torch.cat([text.new_full((batch, 1), self.bos_id), targets[:, :-1].clamp(min=0)], dim=1)
        mask = positions <= text_lengths[:, None]
        logits = self.llm(input_ids=inputs, attention_mask=mask.long()).logits.float()
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_ID,
                              label_smoothing=self.lsm_weight, reduction="sum")
        tokens = mask.sum()
        loss = nll / (tokens if self.length_normalized_loss else batch)
        accuracy = ((logits.argmax(-1) == targets) & mask).sum().float() / tokens
        stats = {"loss": loss.detach(), "acc": accuracy.detach(), "ppl": torch.exp(nll.detach() / tokens)}
        return force_gatherable((loss, stats, batch), loss.device)

    def collect_feats(self, text: torch.Tensor, text_lengths: torch.Tensor, **kwargs) -> Dict[str, torch.Tensor]:
        return {}
