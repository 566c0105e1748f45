#!/usr/bin/env python3
"""Download a corpus archive (resumable, checked against its published MD5) and extract it safely.

    python -m speechllm.data.download URL --md5 HEX --download_dir downloads [--extract_to /corpora]

An interrupted download leaves ``NAME.part``; the next run asks the server for the rest (an HTTP Range request) and
appends it. The finished file must have the published MD5, else it is renamed ``NAME.bad`` and the run fails saying
so (a truncated or corrupt copy is never extracted). An archive already present with the right MD5 is not fetched
again. Extraction refuses, before writing anything, a member that would land outside the target (an absolute path,
a ``..`` component, a link pointing out) or is a device file, naming the member.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

CHUNK = 1 << 20


def md5_of(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 (the publisher's checksum, not a security measure)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, download_dir: Path, md5: str, quiet: bool = False) -> Path:
    """``download_dir/<basename of url>``, fetched or resumed, with the MD5 checked."""
    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / url.rstrip("/").rsplit("/", 1)[-1]
    if target.is_file():
        if md5_of(target) == md5:
            return target
        target.replace(target.with_name(target.name + ".bad"))
        raise ValueError(f"{target} does not have the published MD5 {md5} (moved to {target.name}.bad): delete "
                         "it and run again to download it anew")
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file is already whole
            response = None
        else:
            raise ValueError(f"downloading {url} failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        raise ValueError(f"cannot reach {url} ({error}): check the network, or download it yourself into "
                         f"{download_dir}") from None
    if response is not None:
        with response:
            resumed = have and response.status == 206
            if have and not resumed and not quiet:
                print(f"{url}: the server ignored the resume request; downloading from the start", file=sys.stderr)
            with open(partial, "ab" if resumed else "wb") as out:
                shutil.copyfileobj(response, out, CHUNK)
    found = md5_of(partial)
    if found != md5:
        partial.replace(target.with_name(target.name + ".bad"))
        raise ValueError(f"{url}: the downloaded file has MD5 {found}, not the published {md5} (kept as "
                         f"{target.name}.bad in {download_dir}): run again to download it anew")
    partial.replace(target)
    return target


def check_members(archive: tarfile.TarFile, target: Path, name: str) -> None:
    root = target.resolve()
    for member in archive.getmembers():
        path = (root / member.name).resolve()
        if os.path.isabs(member.name) or ".." in Path(member.name).parts or not path.is_relative_to(root):
            raise ValueError(f"{name}: member '{member.name}' would be written outside {target}; the archive is not "
                             "a corpus archive (or was tampered with): nothing was extracted")
        if member.issym() or member.islnk():
            link = (path.parent / member.linkname).resolve() if member.issym() else (root / member.linkname).resolve()
            if os.path.isabs(member.linkname) or not link.is_relative_to(root):
                raise ValueError(f"{name}: link '{member.name}' -> '{member.linkname}' points outside {target}; "
                                 "nothing was extracted")
        if member.isdev():
            raise ValueError(f"{name}: member '{member.name}' is a device file; nothing was extracted")


def extract(archive_path: Path, target: Path) -> None:
    """Extract a tar archive into ``target``, every member checked first."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive_path) as archive:
            check_members(archive, target, str(archive_path))
            if hasattr(tarfile, "data_filter"):  # Python's own safe filter too, where it has one (3.11.4+)
                archive.extractall(target, filter="data")
            else:
                archive.extractall(target)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"{archive_path} cannot be extracted ({error}): a damaged download; delete it and run "
                         "again") from None


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--md5", required=True, help="the publisher's MD5 of the archive")
    parser.add_argument("--download_dir", required=True, type=Path, help="where the archive (and .part) goes")
    parser.add_argument("--extract_to", type=Path, help="extract the archive into this folder")
    args = parser.parse_args(argv)
    try:
        archive = download(args.url, args.download_dir, args.md5)
        print(f"{archive}: MD5 {args.md5} checked")
        if args.extract_to:
            extract(archive, args.extract_to)
            print(f"{archive}: extracted into {args.extract_to}")
    except ValueError as error:
        print(f"download: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
