#!/usr/bin/env python3
"""Pack a trained speech LLM into one archive that ``speechllm_inference --packed_model`` accepts.

The archive holds ``config.yaml`` (paths rewritten relative to the archive), ``model.pth``, the LLM folder when the
LLM is local (a hub name stays a hub name), the CTC and label-unit BPE models, and ``meta.yaml`` (versions, date, sources).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Tuple

import yaml

LLM_DIR = "llm"
# The SentencePiece models a config names, and their names in the archive.
BPE_MODELS = {"ctc_bpemodel": "ctc_bpe.model", "bpemodel": "bpe.model"}


def pack(train_config: str, model_file: str, outpath: str) -> Path:
    import torch

    import speechllm
    from speechllm.models.llm import split_gguf_path

    with open(train_config, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    members = {"model.pth": Path(model_file)}
    llm = config["llm_conf"]["name_or_path"]
    folder, gguf_file = split_gguf_path(llm)
    if Path(folder).is_dir():
        files = [Path(folder) / gguf_file] if gguf_file else [p for p in Path(folder).iterdir() if p.is_file()]
        members.update({f"{LLM_DIR}/{p.name}": p for p in files})
        config["llm_conf"]["name_or_path"] = f"{LLM_DIR}/{gguf_file}" if gguf_file else LLM_DIR
    for key, name in BPE_MODELS.items():
        if config.get(key):
            members[name] = Path(config[key])
            config[key] = name
    missing = [str(p) for p in members.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"pack: cannot read {missing} (referenced by {train_config})")
    meta = {
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "speechllm": speechllm.__version__,
        "torch": str(torch.__version__),
        "sources": {"train_config": str(train_config), "model_file": str(model_file), "llm": llm},
    }
    out = Path(outpath)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
        archive.writestr("meta.yaml", yaml.safe_dump(meta, sort_keys=False))
        for name, path in members.items():
            archive.write(path, name)
    return out


def resolve_config(folder: Path, root: Path = None) -> Path:
    """Write ``folder/config.resolved.yaml``: the packed config with the archive's own paths made absolute, under
    ``root`` (default: the folder itself; the folder's final place when it is about to be renamed there)."""
    root = (root or folder).resolve()
    with open(folder / "config.yaml", encoding="utf-8") as f:
        config = yaml.safe_load(f)
    llm = config["llm_conf"]["name_or_path"]
    if (folder / llm.split("/")[0]).exists():
        config["llm_conf"]["name_or_path"] = str(root / llm)
    for key in BPE_MODELS:
        if config.get(key):
            config[key] = str(root / config[key])
    resolved = folder / "config.resolved.yaml"
    resolved.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return resolved


def check_members(archive: zipfile.ZipFile, archive_path: Path) -> None:
    """Refuse members that would land outside the extraction folder (absolute paths, '..')."""
    for name in archive.namelist():
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise ValueError(f"{archive_path}: member '{name}' would be written outside the folder it is unpacked "
                             "into; this is not an archive written by speechllm.bin.pack, do not use it")


def unpack(archive_path: str, cache_dir: str = "") -> Tuple[str, str]:
    """Extract once and return (config.resolved.yaml, model.pth) with absolute paths.

    The extraction is keyed by the archive's size and modification time: every decoding job calls this, and hashing
    a multi-GB archive (an LLM folder inside) in each of them would cost more than the decoding of a small test
    set. Several processes may unpack the same archive at once: each extracts into a temporary folder and renames it
    into place, so a folder that exists is always complete."""
    archive_path = Path(archive_path)
    try:
        stat = archive_path.stat()
    except OSError as error:
        raise FileNotFoundError(f"packed model {archive_path}: {error.strerror}") from None
    key = hashlib.sha256(f"{archive_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    parent = Path(cache_dir or archive_path.parent)
    target = parent / f".{archive_path.stem}.{key}"
    if not (target / "config.resolved.yaml").is_file():
        try:
            archive = zipfile.ZipFile(archive_path)
        except zipfile.BadZipFile:
            raise ValueError(f"{archive_path} is not a zip archive (or is truncated): give the packed.zip that "
                             "stage 11 (speechllm.bin.pack) wrote, or an unpacked model folder") from None
        with archive:
            check_members(archive, archive_path)
            partial = Path(tempfile.mkdtemp(prefix=f".{archive_path.stem}.partial.", dir=parent))
            try:
                archive.extractall(partial)
                resolve_config(partial, root=target)  # paths of the final folder: the rename moves, never rewrites
                os.rename(partial, target)
            except OSError:
                if not (target / "config.resolved.yaml").is_file():  # not another process's complete folder
                    raise
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return str(target / "config.resolved.yaml"), str(target / "model.pth")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train_config", required=True)
    parser.add_argument("--model_file", required=True)
    parser.add_argument("--outpath", required=True)
    args = parser.parse_args(argv)
    out = pack(args.train_config, args.model_file, args.outpath)
    print(f"pack: wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main(sys.argv[1:])
