"""ESPnet's Trainer with safe checkpoint loading and atomic checkpoint writing.

ESPnet's ``Trainer`` loads ``checkpoint.pth`` (``--resume``) and the ``NNepoch.pth`` files it averages with
``torch.load(..., weights_only=False)``: unpickling such a file runs whatever code its author put in it. It also
writes ``checkpoint.pth``, ``NNepoch.pth`` and the averaged models straight to their final names, so a kill during
the write leaves a truncated file (a 0-byte ``checkpoint.pth`` made every later resume fail with ``EOFError``).

``SpeechLLMTrainer`` keeps ESPnet's training loop as it is and changes only how files are read and written:

* every checkpoint is loaded with ``torch.load(..., weights_only=True)`` (tensors and plain data only); a file that
  holds anything else is refused, naming it;
* every checkpoint is written to a temporary file in the same folder, flushed to disk (fsync) and renamed over the
  final name, so the final name always holds a complete file (the old one or the new one);
* a damaged ``checkpoint.pth`` (from an older writer, a full disk, a bad copy) is an error that names the file and
  the choices: resume from the newest complete ``NNepoch.pth`` snapshot, or start over.

ESPnet's ``run`` and ``average_nbest_models`` call ``torch.save``/``torch.load`` through their module's ``torch``
name; while ``SpeechLLMTrainer.run`` runs, that name refers to a view of torch whose ``save`` and ``load`` are the
two functions below (everything else is torch itself). Nothing outside those two ESPnet modules is touched.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import re
import tempfile
import types
import zipfile
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import torch
from espnet2.train.trainer import Trainer

PathLike = Union[str, os.PathLike]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: damaged, or holding more than tensors and plain data."""


def _is_path(f) -> bool:
    return isinstance(f, (str, os.PathLike))


def atomic_save(obj, f, *args, **kwargs) -> None:
    """``torch.save`` that never leaves a partial file under the final name: temporary file, fsync, rename.

    A file object (not a path) is written to directly, as torch.save does.
    """
    if not _is_path(f):
        torch.save(obj, f, *args, **kwargs)
        return
    path = Path(f)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream, *args, **kwargs)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a crash right after it must not bring the old name back)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def plain_data_globals() -> list:
    """What ESPnet's checkpoints hold besides tensors and builtins, all of it inert data: the reporter's numpy
    scalars (``numpy._core.multiarray.scalar`` from a dtype and raw bytes; ``numpy.dtype`` and its numeric dtype
    classes) and its ``datetime.timedelta`` epoch times. None of these calls anything given in the file."""
    import datetime

    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    allowed = [scalar, np.dtype, datetime.timedelta]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in (
            "Float16DType", "Float32DType", "Float64DType", "LongDoubleDType", "BoolDType", "Int8DType",
            "Int16DType", "Int32DType", "Int64DType", "UInt8DType", "UInt16DType", "UInt32DType", "UInt64DType",
            "LongDType", "ULongDType", "LongLongDType", "ULongLongDType") if hasattr(dtypes, name)]
    return allowed


def safe_load(f, map_location=None, **kwargs):
    """``torch.load(f, weights_only=True)``, whatever the caller asked for; errors name the file.

    A file holding other Python objects (which unpickling would construct, possibly running code) raises
    CheckpointError; so does a damaged one (truncated, empty, not a checkpoint).
    """
    kwargs.pop("weights_only", None)
    try:
        with torch.serialization.safe_globals(plain_data_globals()):
            return torch.load(f, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        detail = _weights_only_detail(str(error))
        if first.startswith("Weights only load failed"):
            raise CheckpointError(
                f"{f}: refused to load: it holds Python objects other than tensors and plain data, and unpickling "
                f"them could run code{detail}. speechllm loads checkpoints with torch.load(weights_only=True); "
                "checkpoints written by speechllm/ESPnet training never need more. If you made this file yourself "
                "and trust it, convert it to a plain state_dict"
            ) from None
        raise CheckpointError(f"{f}: damaged checkpoint ({first})") from error
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError) as error:
        size = f" ({os.path.getsize(f)} bytes)" if _is_path(f) and os.path.isfile(f) else ""
        raise CheckpointError(
            f"{f}: damaged checkpoint{size} ({type(error).__name__}: {str(error) or 'the file ends early'})"
        ) from error


def _weights_only_detail(message: str) -> str:
    match = re.search(r"(Unsupported global: .*?)(?: was not an allowed global|\n|$)|(Unsupported operand [^\n]*)",
                      message)
    return f" ({(match.group(1) or match.group(2)).strip()})" if match else ""


def snapshot_epochs(output_dir: Path) -> list[int]:
    """Epoch numbers of the ``NNepoch.pth`` files in `output_dir`, newest first."""
    epochs = []
    for path in output_dir.glob("*epoch.pth"):
        match = re.fullmatch(r"(\d+)epoch\.pth", path.name)
        if match and not path.is_symlink():
            epochs.append(int(match.group(1)))
    return sorted(epochs, reverse=True)


def last_good_snapshot(output_dir: Path) -> Optional[Path]:
    """The newest ``NNepoch.pth`` that loads (tensors only), or None."""
    for epoch in snapshot_epochs(output_dir):
        path = output_dir / f"{epoch}epoch.pth"
        try:
            safe_load(path, map_location="cpu")
        except CheckpointError:
            continue
        return path
    return None


def damaged_checkpoint_message(checkpoint: Path, error: Exception) -> str:
    output_dir = checkpoint.parent
    snapshot = last_good_snapshot(output_dir)
    if snapshot is not None:
        resume = (f"resume from the last good snapshot, {snapshot} (the model weights after that epoch; optimizer, "
                  f"scheduler and epoch count start afresh): train into a new --output_dir with "
                  f"--init_param {snapshot}")
    else:
        resume = (f"resume from the last good snapshot: there is none in {output_dir} (no complete NNepoch.pth), "
                  "so this choice is not open")
    return (
        f"cannot resume: {error}. {checkpoint} was probably cut short while it was written (a kill or a full disk "
        "under an older writer; speechllm writes checkpoints atomically). Choose one:\n"
        f"  1. {resume}\n"
        f"  2. start over: delete {checkpoint} (or pass --resume false); training restarts at epoch 1 and "
        f"overwrites the epoch files in {output_dir}"
    )


def _safe_torch_view() -> types.ModuleType:
    """torch, except that ``save`` is atomic_save and ``load`` is safe_load."""
    view = types.ModuleType("torch")
    view.__getattr__ = lambda name: getattr(torch, name)  # module-level __getattr__ (PEP 562)
    view.save = atomic_save
    view.load = safe_load
    return view


# The ESPnet modules whose torch.save/torch.load calls are redirected (by module, not by attribute of a package:
# a package may rebind a submodule's name to a function of the same name).
_PATCHED_MODULES = tuple(importlib.import_module(name) for name in (
    "espnet2.train.trainer", "espnet2.main_funcs.average_nbest_models"))


@contextlib.contextmanager
def safe_checkpoint_io() -> Iterator[None]:
    """Within the block, ESPnet's trainer and model averaging save atomically and load safely."""
    saved = [(module, module.torch) for module in _PATCHED_MODULES]
    view = _safe_torch_view()
    for module, _ in saved:
        module.torch = view
    try:
        yield
    finally:
        for module, original in saved:
            module.torch = original


class SpeechLLMTrainer(Trainer):
    """ESPnet's Trainer; checkpoints load with weights_only=True and are written atomically (see module doc)."""

    @staticmethod
    def resume(
        checkpoint: PathLike,
        model: torch.nn.Module,
        reporter,
        optimizers: Sequence[torch.optim.Optimizer],
        schedulers: Sequence,
        scaler,
        ngpu: int = 0,
        strict: bool = True,
    ):
        checkpoint = Path(checkpoint)
        try:
            states = safe_load(
                checkpoint, map_location=f"cuda:{torch.cuda.current_device()}" if ngpu > 0 else "cpu"
            )
        except CheckpointError as error:
            if "refused to load" in str(error):
                raise
            raise CheckpointError(damaged_checkpoint_message(checkpoint, error)) from None
        model.load_state_dict(states["model"], strict=strict)
        reporter.load_state_dict(states["reporter"])
        for optimizer, state in zip(optimizers, states["optimizers"]):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(schedulers, states["schedulers"]):
            if scheduler is not None:
                scheduler.load_state_dict(state)
        if scaler is not None:
            if states["scaler"] is None:
                logging.warning("scaler state is not found")
            else:
                scaler.load_state_dict(states["scaler"])
        logging.info(f"The training was resumed using {checkpoint}")

    @classmethod
    def run(cls, *args, **kwargs) -> None:
        from speechllm.compat import log_import_notices

        log_import_notices()
        with safe_checkpoint_io():
            return super().run(*args, **kwargs)
