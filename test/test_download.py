"""speechllm.data.download against a local HTTP server that honours Range requests: whole and resumed downloads,
MD5 checks, and extraction that refuses members landing outside the target."""
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from speechllm.data.download import download, extract, main

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_whole_download_is_checked_and_reused(tmp_path, archive_server):
    url = archive_server({"/a.tar.gz": PAYLOAD})
    path = download(f"{url}/a.tar.gz", tmp_path, md5(PAYLOAD), quiet=True)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "a.tar.gz.part").exists()
    before = len(archive_server.requests)
    assert download(f"{url}/a.tar.gz", tmp_path, md5(PAYLOAD)) == path
    assert len(archive_server.requests) == before  # present with the right MD5: not fetched again


def test_interrupted_download_resumes_with_a_range_request(tmp_path, archive_server):
    url = archive_server({"/a.tar.gz": PAYLOAD})
    (tmp_path / "a.tar.gz.part").write_bytes(PAYLOAD[:300_000])
    path = download(f"{url}/a.tar.gz", tmp_path, md5(PAYLOAD), quiet=True)
    assert path.read_bytes() == PAYLOAD
    assert archive_server.requests[-1] == ("/a.tar.gz", "bytes=300000-")


def test_corrupt_download_is_kept_aside_and_named(tmp_path, archive_server):
    url = archive_server({"/a.tar.gz": PAYLOAD[:-1] + b"x"})
    with pytest.raises(ValueError, match=rf"has MD5 \w+, not the published {md5(PAYLOAD)} .*a.tar.gz.bad"):
        download(f"{url}/a.tar.gz", tmp_path, md5(PAYLOAD), quiet=True)
    assert not (tmp_path / "a.tar.gz").exists() and (tmp_path / "a.tar.gz.bad").is_file()
    with pytest.raises(ValueError, match="HTTP 404"):
        download(f"{url}/missing.tar.gz", tmp_path, md5(PAYLOAD), quiet=True)


def archive_with(path: Path, *members) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(target)
                archive.addfile(info, io.BytesIO(target))
            else:
                info.type, info.linkname = tarfile.SYMTYPE, target
                archive.addfile(info)
    return path


@pytest.mark.parametrize("member", [("LibriSpeech/../../escape.txt", "file", b"x"),
                                    ("/tmp/absolute.txt", "file", b"x"),
                                    ("LibriSpeech/link", "link", "../../outside")])
def test_extraction_refuses_members_outside_the_target(tmp_path, member):
    archive = archive_with(tmp_path / "evil.tar.gz", ("LibriSpeech/ok.txt", "file", b"ok"), member)
    with pytest.raises(ValueError, match=r"outside .*nothing was extracted"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "LibriSpeech").exists() and not (tmp_path / "escape.txt").exists()


def test_a_damaged_archive_is_named(tmp_path, capsys, archive_server):
    good = archive_with(tmp_path / "good.tar.gz", ("LibriSpeech/ok.txt", "file", b"ok"))
    damaged = good.read_bytes()[:-40]
    url = archive_server({"/d.tar.gz": damaged})
    code = main([f"{url}/d.tar.gz", "--md5", md5(damaged), "--download_dir", str(tmp_path / "dl"),
                 "--extract_to", str(tmp_path / "out")])
    assert code == 1 and "cannot be extracted" in capsys.readouterr().err
