"""Damaged weight files (a copy or download cut short) reported by name instead of by a loader's inner error.

transformers and its readers report a truncated ``model.safetensors`` as "Error while deserializing header:
incomplete metadata, file not fully covered" and a truncated ``.gguf`` as "cannot reshape array of size ... into
shape ..." or a struct error, without saying which file. ``naming_damaged_files(name_or_path, option)`` wraps a
loading call: when it fails, the weight files involved are checked (cheaply: the safetensors header against the
file size, the GGUF header and tensor table, the zip directory of a ``.bin``/``.pt``), and a damaged one becomes a
``WeightFileError`` naming the option, the file and what is wrong with it. Otherwise the original error stands.
"""
from __future__ import annotations

import contextlib
import json
import os
import zipfile
from pathlib import Path
from typing import Iterator, Optional, Tuple


class WeightFileError(OSError):
    """A weight file that cannot be read as what its name says; the message names the file."""


def safetensors_problem(path: Path) -> Optional[str]:
    size = path.stat().st_size
    with open(path, "rb") as stream:
        head = stream.read(8)
        if len(head) < 8:
            return f"the file has {size} bytes, fewer than the 8 of a safetensors header length"
        header_length = int.from_bytes(head, "little")
        if 8 + header_length > size:
            return (f"the header says {header_length} bytes of metadata follow, but the file has only {size} bytes "
                    "(truncated)")
        try:
            header = json.loads(stream.read(header_length))
        except (ValueError, UnicodeDecodeError):
            return "its metadata is not valid JSON"
    try:
        end = max((int(t["data_offsets"][1]) for name, t in header.items() if name != "__metadata__"), default=0)
    except (TypeError, KeyError, ValueError, IndexError):
        return "its metadata does not list tensor offsets"
    expected = 8 + header_length + end
    if size < expected:
        return f"the file has {size} bytes but its header places tensor data up to byte {expected} (truncated)"
    return None


def gguf_problem(path: Path) -> Optional[str]:
    try:
        from gguf import GGUFReader
    except ImportError:
        return None  # transformers reports the missing package itself
    try:
        GGUFReader(str(path))
    except Exception as error:  # the reader raises struct, value and index errors on a short or bad file
        return f"not a complete GGUF file ({type(error).__name__}: {error}); size {path.stat().st_size} bytes"
    return None


def zip_checkpoint_problem(path: Path) -> Optional[str]:
    if path.stat().st_size == 0:
        return "the file is empty"
    with open(path, "rb") as stream:
        if stream.read(2) != b"PK":
            return None  # a legacy (non-zip) torch pickle: nothing cheap to check
    try:
        with zipfile.ZipFile(path):
            pass
    except zipfile.BadZipFile as error:
        return f"its zip directory is missing or broken ({error}; truncated?)"
    return None


CHECKS = {".safetensors": safetensors_problem, ".gguf": gguf_problem, ".bin": zip_checkpoint_problem,
          ".pt": zip_checkpoint_problem, ".pth": zip_checkpoint_problem}


def damaged_weight_file(name_or_path: str | os.PathLike) -> Optional[Tuple[Path, str]]:
    """(file, what is wrong) for the first damaged weight file of a model folder or file, or None."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        candidates = [path]
    elif path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in CHECKS)
    else:
        return None
    for candidate in candidates:
        check = CHECKS.get(candidate.suffix)
        if check is None:
            continue
        try:
            problem = check(candidate)
        except OSError as error:
            problem = f"cannot be read ({error.strerror or error})"
        if problem:
            return candidate, problem
    return None


@contextlib.contextmanager
def naming_damaged_files(name_or_path: str | os.PathLike, option: str) -> Iterator[None]:
    """Re-raise a loading error as WeightFileError naming the damaged file, when one is found (see module doc)."""
    try:
        yield
    except Exception as error:
        damaged = damaged_weight_file(name_or_path)
        if damaged is None:
            raise
        file, problem = damaged
        raise WeightFileError(
            f"{option}: {file} is damaged: {problem}. Copy or download it again (check its size or checksum "
            f"against the original); the loader said: {type(error).__name__}: {error}"
        ) from error
