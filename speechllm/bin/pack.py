#!/usr/bin/env python3
"""Pack a trained speech LLM into one archive that ``speechllm_inference --packed_model`` accepts.

The archive holds ``config.yaml`` (paths rewritten relative to the archive), ``model.pth``, the LLM folder when the
LLM is local (a hub name stays a hub name), the CTC BPE model, and ``meta.yaml`` (versions, date, sources).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import sys
import zipfile
from pathlib import Path
from typing import Tuple

import yaml

LLM_DIR, CTC_BPE = "llm", "ctc_bpe.model"


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
    if config.get("ctc_bpemodel"):
        members[CTC_BPE] = Path(config["ctc_bpemodel"])
        config["ctc_bpemodel"] = CTC_BPE
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


def unpack(archive_path: str, cache_dir: str = "") -> Tuple[str, str]:
    """Extract once and return (config.yaml, model.pth) with absolute paths. The extraction is keyed by the
    archive's size and modification time: every decoding job calls this, and hashing a multi-GB archive (an LLM
    folder inside) in each of them would cost more than the decoding of a small test set."""
    archive_path = Path(archive_path)
    stat = archive_path.stat()
    key = hashlib.sha256(f"{archive_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = Path(cache_dir or archive_path.parent) / f".{archive_path.stem}.{key}"
    config_file = target / "config.resolved.yaml"
    if not config_file.is_file():
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(target)
        with open(target / "config.yaml", encoding="utf-8") as f:
            config = yaml.safe_load(f)
        llm = config["llm_conf"]["name_or_path"]
        if (target / llm.split("/")[0]).exists():
            config["llm_conf"]["name_or_path"] = str(target / llm)
        if config.get("ctc_bpemodel"):
            config["ctc_bpemodel"] = str(target / config["ctc_bpemodel"])
        config_file.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return str(config_file), str(target / "model.pth")


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
