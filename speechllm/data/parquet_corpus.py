"""Corpora published as Hugging Face parquet shards, converted into Kaldi data dirs without the `datasets` package.

A shard is a parquet file whose rows are utterances; the audio column holds the encoded file (Hugging Face's
``Audio`` feature stores ``struct<bytes: binary, path: string>``). The corpus converters
(:mod:`speechllm.data.loquacious`, :mod:`speechllm.data.esb`) share what is here:

- :func:`find_shards`: the shards of one split in a local copy, in either layout the hub uses
  (``<folder>/<split>-00000-of-00006.parquet`` or ``<folder>/<split>/0000.parquet``);
- :func:`check_schema`: every shard has the expected columns, else an error naming the shard, the missing column
  and the expected schema (checked for all shards before anything is written);
- :class:`ShardWriter`: each row's audio decoded and written as a 16-bit FLAC file (atomically), per shard, with a
  ``done.json`` record so that a rerun skips finished shards and a killed run redoes only the unfinished one;
- :func:`write_data_dir`: the data dir written into a temporary folder, validated, then renamed into place, so an
  interrupted conversion never leaves a dir that looks complete.

pyarrow is imported on use (tools/constraints.txt pins it); nothing here reaches a network except
:func:`local_copy` when it is given a hub name.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from speechllm.data.audio import AudioError, check_finite, decode_bytes, pick_channel, write_audio
from speechllm.data.datadir import DataDir, DataDirError, Problem
from speechllm.data.validate import require_valid

# Characters a Kaldi id cannot hold here: whitespace and sclite's '(' ')' (speechllm.data.datadir.sclite_unsafe),
# and '/' (utterance ids name the dumped audio files).
_UNSAFE_ID_CHARS = re.compile(r"[()\s/]")
BATCH_ROWS = 64  # rows read at once: bounds memory to a few dozen encoded files


def pyarrow_parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise DataDirError(Problem("", None, "reading parquet shards needs pyarrow, which is not installed",
                                   "tools/install.sh installs it (pip install pyarrow, at the version of "
                                   "tools/constraints.txt)")) from err
    return pq


@dataclass(frozen=True)
class Schema:
    """The columns a corpus's shards must have: name -> what it holds (for messages)."""
    corpus: str
    columns: Mapping[str, str]
    audio_column: str

    def describe(self) -> str:
        return ", ".join(f"{name} ({what})" for name, what in self.columns.items())


def kaldi_id(raw: str) -> str:
    """A corpus id as a Kaldi id: whitespace, '(', ')' and '/' become '_'."""
    return _UNSAFE_ID_CHARS.sub("_", raw.strip())


def local_copy(source: str, patterns: list[str]) -> Path:
    """`source` as a local folder: itself when it is one, else a hub dataset name (owner/name) whose files matching
    `patterns` are fetched into the hub cache (huggingface_hub; needs the network)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise DataDirError(Problem(source, None, "is not a folder", "give the folder holding a local copy of the "
                                   "corpus's parquet shards (or its hub name, owner/name, where a hub is reachable)"))
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(source, repo_type="dataset", allow_patterns=patterns))
    except Exception as error:  # offline mode, no network, unknown name: all mean "no local copy"
        raise DataDirError(Problem(source, None, f"is not a local folder and could not be fetched from the hub "
                                   f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})",
                                   f"download it where a hub is reachable (huggingface-cli download {source} "
                                   f"--repo-type dataset --local-dir DIR) and give DIR")) from None


def find_shards(folder: Path, split: str) -> list[Path]:
    """The parquet shards of `split` in `folder`: ``<split>-*.parquet`` files or ``<split>/*.parquet``, sorted."""
    shards = sorted(folder.glob(f"{split}-*.parquet")) + sorted((folder / split).glob("*.parquet"))
    return [s for s in shards if s.is_file()]


def check_schema(shard: Path, schema: Schema) -> None:
    """Raise DataDirError naming the shard and what is missing unless it has every column of `schema`."""
    pq = pyarrow_parquet()
    try:
        found = pq.read_schema(shard)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a file that is not parquet
        raise DataDirError(Problem(str(shard), None, f"is not a readable parquet file ({error})",
                                   "download the shard again")) from None
    missing = [name for name in schema.columns if name not in found.names]
    if missing:
        raise DataDirError(Problem(
            str(shard), None, f"has no column(s) {', '.join(repr(m) for m in missing)}: not a {schema.corpus} shard "
            f"(its columns: {', '.join(found.names)}; expected: {schema.describe()})",
            f"point to a local copy of {schema.corpus}'s parquet shards"))
    audio = found.field(schema.audio_column).type
    if not (str(audio).startswith("struct") and "bytes" in [audio.field(i).name for i in range(audio.num_fields)]) \
            and str(audio) not in ("binary", "large_binary"):
        raise DataDirError(Problem(str(shard), None, f"column '{schema.audio_column}' is {audio}, not encoded audio "
                                   "(struct<bytes, path> or binary)",
                                   f"point to a local copy of {schema.corpus}'s parquet shards"))


def iter_rows(shard: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number from 1, {column: value}) for every row of the shard, a batch at a time."""
    pq = pyarrow_parquet()
    number = 0
    for batch in pq.ParquetFile(shard).iter_batches(batch_size=BATCH_ROWS, columns=columns):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def audio_cell_bytes(cell: Any) -> bytes | None:
    """The encoded file of an audio cell (struct with 'bytes', or plain bytes)."""
    if isinstance(cell, dict):
        cell = cell.get("bytes")
    return cell if isinstance(cell, (bytes, bytearray)) and cell else None


def shard_signature(shard: Path, options: Mapping[str, Any]) -> dict[str, Any]:
    stat = shard.stat()
    return {"shard": str(shard.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns, "options": dict(options)}


@dataclass(frozen=True)
class Utterance:
    """One row kept for the data dir (chosen from the metadata columns, before any audio is read)."""
    utt: str  # Kaldi utterance id
    speaker: str
    text: str
    category: str = ""  # utt2category (e.g. the source corpus), empty for none


class ShardWriter:
    """Writes the audio of one shard's kept rows as <audio_dir>/<utt>.flac and records their lengths in
    <audio_dir>/done.json with the shard's size, time and the conversion options, so that a rerun with the same
    shard and options (:meth:`finished`) skips it, and a killed run redoes only the shard it was in."""

    def __init__(self, shard: Path, audio_dir: Path, options: Mapping[str, Any]):
        self.shard = shard
        self.audio_dir = audio_dir
        self.signature = shard_signature(shard, options)
        self.record = audio_dir / "done.json"

    def finished(self) -> dict[str, int] | None:
        """utt -> number of samples of an earlier complete conversion of the same shard and options, else None."""
        try:
            saved = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        lengths = saved.get("num_samples", {})
        if saved.get("signature") != self.signature or \
                not all((self.audio_dir / f"{utt}.flac").is_file() for utt in lengths):
            return None
        return lengths

    def write_audio(self, utt: str, encoded: bytes | None, row: int) -> int:
        """Decode one row's audio and write it as <audio_dir>/<utt>.flac (16-bit, its own rate); returns its length."""
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        fix = "download the shard again; if it persists, drop the utterance from the data dir afterwards"
        if encoded is None:
            raise DataDirError(Problem(str(self.shard), None, f"row {row} ('{utt}') has no audio bytes", fix))
        try:
            audio = decode_bytes(encoded, "its audio")
            check_finite(audio)
            samples = pick_channel(audio, -1)
        except AudioError as error:
            raise DataDirError(Problem(str(self.shard), None, f"row {row} ('{utt}'): {error.message}", fix)) from None
        if len(samples) == 0:
            raise DataDirError(Problem(str(self.shard), None, f"row {row} ('{utt}'): the audio is empty", fix))
        write_audio(self.audio_dir / f"{utt}.flac", samples, audio.fs, "flac")
        return len(samples)

    def finish(self, num_samples: dict[str, int]) -> None:
        handle, temp = tempfile.mkstemp(dir=self.audio_dir, prefix=".done.", suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump({"signature": self.signature, "num_samples": num_samples}, stream)
        os.replace(temp, self.record)


def write_shard_audio(shard: Path, schema: Schema, kept: Mapping[int, Utterance], audio_dir: Path,
                      options: Mapping[str, Any]) -> dict[str, int]:
    """Write the audio of the `kept` rows (row number -> utterance) of a shard, or reuse an earlier run's; returns
    utt -> number of samples."""
    writer = ShardWriter(shard, audio_dir, options)
    done = writer.finished()
    if done is not None and set(done) == {u.utt for u in kept.values()}:
        return done
    lengths = {}
    for number, row in iter_rows(shard, [schema.audio_column]):
        if number in kept:
            lengths[kept[number].utt] = writer.write_audio(kept[number].utt, audio_cell_bytes(row[schema.audio_column]),
                                                           number)
    writer.finish(lengths)
    return lengths


def data_dir_files(utterances: list[Utterance], audio_of: Mapping[str, Path], num_samples: Mapping[str, int]
                   ) -> dict[str, dict[str, str]]:
    """The files of a data dir over `utterances` (wav.scp with absolute FLAC paths; utt2category when any has one)."""
    files: dict[str, dict[str, str]] = {
        "wav.scp": {u.utt: str(audio_of[u.utt].resolve()) for u in utterances},
        "text": {u.utt: u.text for u in utterances},
        "utt2spk": {u.utt: u.speaker for u in utterances},
        "utt2num_samples": {u.utt: str(num_samples[u.utt]) for u in utterances},
    }
    if any(u.category for u in utterances):
        files["utt2category"] = {u.utt: u.category for u in utterances}
    return files


class RowError(Exception):
    """A row the converter cannot use and must not drop silently: what is wrong with it and the fix."""

    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass
class Conversion:
    """What :func:`convert_shards` made: the kept utterances in shard order, their audio, and what was dropped."""
    utterances: list[Utterance]
    audio_of: dict[str, Path]
    num_samples: dict[str, int]
    rows: int
    dropped: dict[str, int]  # reason -> count

    def files(self) -> dict[str, dict[str, str]]:
        return data_dir_files(self.utterances, self.audio_of, self.num_samples)

    def summary(self, fs: int = 16000) -> str:
        hours = sum(self.num_samples.values()) / fs / 3600
        text = f"kept {len(self.utterances)} of {self.rows} utterances ({hours:.2f} h at {fs} Hz)"
        if self.dropped:
            text += "; removed: " + ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items()))
        return text


def convert_shards(shards: list[Path], schema: Schema, choose: Callable[[dict[str, Any]], Utterance | str],
                   audio_root: Path, options: Mapping[str, Any]) -> Conversion:
    """Convert the rows of `shards` that `choose` keeps: it gets each row's non-audio columns and returns an
    Utterance, a reason to drop the row (counted and reported), or raises RowError (the row is listed and nothing is
    written). Every shard's schema and every row's metadata are checked before any audio is written."""
    for shard in shards:
        check_schema(shard, schema)
    meta = [name for name in schema.columns if name != schema.audio_column]
    problems: list[Problem] = []
    plans: dict[Path, dict[int, Utterance]] = {}
    places: dict[str, list[str]] = {}
    dropped: dict[str, int] = {}
    rows = 0
    for shard in shards:
        kept = plans[shard] = {}
        for number, row in iter_rows(shard, meta):
            rows += 1
            try:
                chosen = choose(row)
            except RowError as error:
                problems.append(Problem(str(shard), None, f"row {number}: {error.message}", error.fix, kind="row"))
                continue
            if isinstance(chosen, str):
                dropped[chosen] = dropped.get(chosen, 0) + 1
                continue
            kept[number] = chosen
            places.setdefault(chosen.utt, []).append(f"{shard} row {number}")
    problems += [Problem(where[0], None, f"utterance id '{utt}' also comes from {', '.join(where[1:])}",
                         "the copy holds the same utterance twice (or two ids that differ only in whitespace, "
                         "'(', ')' or '/'): download it again", kind="duplicate id")
                 for utt, where in places.items() if len(where) > 1]
    if problems:
        raise DataDirError(problems)
    utterances: list[Utterance] = []
    audio_of: dict[str, Path] = {}
    num_samples: dict[str, int] = {}
    for shard in shards:
        audio_dir = audio_root / shard.stem
        num_samples.update(write_shard_audio(shard, schema, plans[shard], audio_dir, options))
        for utterance in plans[shard].values():
            utterances.append(utterance)
            audio_of[utterance.utt] = audio_dir / f"{utterance.utt}.flac"
    return Conversion(utterances, audio_of, num_samples, rows, dropped)


def write_data_dir(dest: Path, files: dict[str, dict[str, str]]) -> None:
    """Write the data dir `files` (name -> id -> value; spk2utt derived) to `dest` through a temporary sibling,
    validated, then renamed: `dest` is either the old dir or the complete new one, never half-written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        DataDir(None, files).write(temp)
        require_valid(temp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(temp, dest)
    finally:
        if temp.exists():
            shutil.rmtree(temp)
