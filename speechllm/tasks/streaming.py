"""The data loader of statistics collection and decoding (ESPnet's ``AbsTask.build_streaming_iterator``), over ESPnet's
map-style ``ESPnetDataset`` instead of its ``IterableESPnetDataset``, which

* cannot read a Kaldi ``text`` line without a transcript (``utt-id`` alone: the empty transcript of a non-speech
  utterance, utils/add_nonspeech.sh) and stops with "This line doesn't include a space";
* drops the batch size to 1 whenever the data dir holds ``utt2category`` (for ESPnet's category batching, which
  decoding here does not use), so a decode of such a set would run one utterance at a time.

Utterances come in the order of ``key_file`` (or of the first data file), as with ESPnet's.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from torch.utils.data import DataLoader


def build_streaming_iterator(cls, data_path_and_name_and_type, preprocess_fn, collate_fn,
                             key_file: Optional[str] = None, batch_size: int = 1, dtype: Optional[Any] = np.float32,
                             num_workers: int = 1, allow_variable_data_keys: bool = False, ngpu: int = 0,
                             inference: bool = False, mode: Optional[str] = None,
                             multi_task_dataset: bool = False) -> DataLoader:
    """Bound as a classmethod of a task: ``build_streaming_iterator = classmethod(build_streaming_iterator)``."""
    from espnet2.train.dataset import ESPnetDataset

    if multi_task_dataset:
        raise ValueError("multi-task datasets are not supported by speechllm's tasks")
    dataset = ESPnetDataset(list(data_path_and_name_and_type), preprocess=preprocess_fn,
                            float_dtype=str(np.dtype(dtype)) if dtype is not None else "float32")
    cls.check_task_requirements(dataset, allow_variable_data_keys, train=False, inference=inference)
    listed = key_file or data_path_and_name_and_type[0][0]
    with open(listed, encoding="utf-8") as f:
        keys = [line.split(maxsplit=1)[0] for line in f if line.strip()]
    return DataLoader(dataset, sampler=keys, batch_size=batch_size, num_workers=num_workers, pin_memory=ngpu > 0,
                      collate_fn=collate_fn)
