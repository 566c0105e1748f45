#!/usr/bin/env python3
"""Real English speech test sets, from free sources with known transcripts (see local/README_real_speech.md).

    python3 local/real_speech.py [--download_dir downloads] [--data_dir data] [--sets an4,pocketsphinx,...]
        [--an4_archive PATH] [--pocketsphinx_sdist PATH] [--deb_root DIR] [--fetch true] [--combined real_all]

Run from the recipe dir. Writes one Kaldi data dir per source, DATA_DIR/real_<source>/{wav.scp,text,utt2spk,spk2utt}
(LC_ALL=C sorted; utterance ids start with their speaker id), 16 kHz mono 16-bit WAV files it converts into
DOWNLOAD_DIR/real_<source>/wav/ (with each source's licence notice beside them), and, with --combined, one data dir
joining every set made. Transcripts are lower-case words without punctuation (numbers written as words).

Sources (each is skipped with a printed note when it cannot be had; --sets picks them):
  an4           CMU AN4 utterances (NIST SPHERE) from an archive or folder holding an4/wav and an4/etc
                (--an4_archive: the mini_an4 downloads.tar.gz, or the full an4_sphere.tar.gz); CMU AN4 licence.
  pocketsphinx  recordings of the PyPI source distribution pocketsphinx==5.1.1 (fetched with pip download, or
                --pocketsphinx_sdist): LibriVox (public domain) and CMU Sphinx test utterances (BSD-2-Clause).
  alsa          Debian alsa-utils' speaker test voice (/usr/share/sounds/alsa: "front left", ...); GPL-2.
  klettres      Debian klettres-data's English words (KDE KLettres, en and en_GB voices); GPL-2+.
  ktuberling    Debian ktuberling-data's English object names (KDE KTuberling); GPL-2+.
Debian files are read where the packages are installed (tools/install.sh --real_speech installs them), else from
DIR/usr/share with --deb_root DIR, else (--fetch true) from packages `apt-get download` fetches into DOWNLOAD_DIR/debs.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

MAIN_ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(MAIN_ROOT))

from speechllm.data.audio import resample, to_pcm16  # noqa: E402
from speechllm.data.datadir import spk2utt_from_utt2spk, write_kv  # noqa: E402

FS = 16000
DEFAULT_AN4 = MAIN_ROOT.parent / "shared" / "corpora" / "mini_an4" / "downloads.tar.gz"
POCKETSPHINX = "pocketsphinx==5.1.1"
ALL_SETS = ("an4", "pocketsphinx", "alsa", "klettres", "ktuberling")


class SourceUnavailable(Exception):
    """The source cannot be had here; the message says why and how to get it."""


@dataclass
class Item:
    speaker: str  # e.g. an4_fash (a set-unique speaker id; unknown speakers get one id per recording session)
    name: str  # the rest of the utterance id
    text: str  # normalised transcript
    load: Callable[[], tuple[np.ndarray, int]]  # -> (samples (frames, channels) float64, sampling rate)

    @property
    def utt_id(self) -> str:
        return f"{self.speaker}-{self.name}"


# ---------------------------------------------------------------------------------------------------------------
# Transcripts and ids.

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(number: int) -> str:
    """0 <= number < 10**12 in words: 1912 -> 'one thousand nine hundred twelve'."""
    if number < 20:
        return _ONES[number]
    if number < 100:
        return _TENS[number // 10] + ("" if number % 10 == 0 else " " + _ONES[number % 10])
    for size, word in ((10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand"), (100, "hundred")):
        if number >= size:
            head, rest = divmod(number, size)
            return f"{number_words(head)} {word}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError(number)


def normalize_transcript(text: str) -> str:
    """Lower-case words without punctuation: 'A red kangaroo.' -> 'a red kangaroo'; digits become words
    ('10' -> 'ten'); hyphens and other punctuation split words; apostrophes inside words stay ("don't")."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)
    return " ".join(text.split())


def clean_id(text: str) -> str:
    """An id part: lower-case letters, digits and '_' only ('Front_Left' -> 'front_left')."""
    cleaned = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not cleaned:
        raise ValueError(f"no id can be made from {text!r}")
    return cleaned


# ---------------------------------------------------------------------------------------------------------------
# Audio.

def read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    with sf.SoundFile(str(path)) as stream:
        return stream.read(dtype="float64", always_2d=True), stream.samplerate


def read_audio_bytes(data: bytes, origin: str) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(io.BytesIO(data)) as stream:
            return stream.read(dtype="float64", always_2d=True), stream.samplerate
    except (sf.SoundFileError, RuntimeError) as error:
        raise RuntimeError(f"{origin}: not audio soundfile can read ({error})") from None


def read_raw_pcm16le(data: bytes, fs: int = FS) -> tuple[np.ndarray, int]:
    """Headerless 16-bit little-endian mono PCM (the pocketsphinx test .raw files, 16 kHz)."""
    if len(data) % 2:
        raise RuntimeError("raw PCM with an odd number of bytes: not 16-bit samples")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0
    return samples[:, None], fs


def to_16k_mono(samples: np.ndarray, fs: int) -> np.ndarray:
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    return resample(mono, fs, FS) if fs != FS else mono


def write_wav(path: Path, samples: np.ndarray) -> None:
    pcm, _ = to_pcm16(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(temp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(FS)
        out.writeframes(pcm.astype("<i2").tobytes())
    os.replace(temp, path)


# ---------------------------------------------------------------------------------------------------------------
# Sources. Each returns (items, licence notices {file name: text}).

AN4_NOTICE_FALLBACK = "The CMU AN4 licence notice: see the LICENSE file of the AN4 distribution.\n"


def an4_transcripts(text: str) -> dict[str, str]:
    """AN4 'an4_*.transcription' lines: '<s> WORDS </s> (fileid)' or 'WORDS (fileid)' -> {fileid: words}."""
    result = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*(.*?)\s*\(([^()\s]+)\)\s*", line)
        if not match:
            continue
        words = [w for w in match[1].split() if not re.fullmatch(r"<[^>]*>|\+\+[^+]*\+\+", w)]
        result[match[2]] = " ".join(words)
    return result


def source_an4(args: argparse.Namespace) -> tuple[list[Item], dict[str, str]]:
    archive = Path(args.an4_archive) if args.an4_archive else None
    if archive is None:
        raise SourceUnavailable(f"no AN4 archive: {DEFAULT_AN4} is absent and --an4_archive was not given (pass the "
                                "mini_an4 downloads.tar.gz, CMU's an4_sphere.tar.gz, or a folder holding an4/)")
    if not archive.exists():
        raise SourceUnavailable(
            f"the AN4 archive '{archive}' does not exist: pass --an4_archive the mini_an4 downloads.tar.gz (as "
            "ESPnet's mini_an4 recipe downloads it) or CMU's an4_sphere.tar.gz, or a folder holding an4/")
    files: dict[str, bytes] = {}
    if archive.is_dir():
        for path in archive.rglob("*"):
            if path.is_file() and re.search(r"an4/(wav/.*\.sph|etc/an4_\w+\.transcription|LICENSE)$", path.as_posix()):
                files[path.relative_to(archive).as_posix()] = path.read_bytes()
    else:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.isfile() and re.search(r"an4/(wav/.*\.sph|etc/an4_\w+\.transcription|LICENSE)$",
                                                 member.name):
                    files[member.name] = tar.extractfile(member).read()
    transcripts: dict[str, str] = {}
    for name, data in sorted(files.items()):
        if name.endswith(".transcription"):
            transcripts.update(an4_transcripts(data.decode("utf-8", "replace")))
    audio = {Path(name).stem: name for name in files if name.endswith(".sph")}
    if not transcripts or not audio:
        raise SourceUnavailable(f"'{archive}' holds no an4/wav/**/*.sph with an4/etc/an4_*.transcription")
    missing = sorted(set(transcripts) - set(audio))
    if missing:
        print(f"real_speech: an4: {len(missing)} transcribed utterance(s) have no audio, e.g. {missing[0]}")
    items = []
    for fileid in sorted(set(transcripts) & set(audio)):
        speaker = fileid.split("-")[1] if fileid.count("-") >= 2 else Path(audio[fileid]).parent.name
        data = files[audio[fileid]]
        items.append(Item(f"an4_{clean_id(speaker)}", clean_id(fileid), normalize_transcript(transcripts[fileid]),
                          lambda data=data, name=audio[fileid]: read_sphere(data, name)))
    notices = {"LICENSE.an4": next((v.decode("utf-8", "replace") for k, v in files.items()
                                    if k.endswith("an4/LICENSE")), AN4_NOTICE_FALLBACK)}
    return items, notices


def read_sphere(data: bytes, origin: str) -> tuple[np.ndarray, int]:
    """An uncompressed NIST SPHERE file (libsndfile reads these, either byte order)."""
    if data[:8] != b"NIST_1A\n":
        raise RuntimeError(f"{origin}: not a NIST SPHERE file")
    if b"shorten" in data[:1024]:
        raise RuntimeError(f"{origin}: shorten-compressed SPHERE; decompress it with sph2pipe first")
    return read_audio_bytes(data, origin)


# The pocketsphinx sdist: each recording used, with its transcript's source in the package and its origin.
# test/data/librivox: LibriVox "Sense and Sensibility" chapter 1 (public domain); transcript: librivox/transcription.
# test/data/cards: card names (CMU Sphinx test data, BSD-2-Clause); transcript: cards/cards.transcription.
# test/data/goforward.raw: CMU Sphinx's classic test utterance (BSD-2-Clause); transcript asserted by the package's
#   tests (cython/test/decoder_test.py: "go forward ten meters").
# Left out: tidigits/ (LDC TIDIGITS: not licence-clear), numbers.raw, something.raw, regression/chan3.*, vad/*
# (no transcript anywhere in the package), forever/ (an alignment test whose recording's origin is not stated).
POCKETSPHINX_PREFIX = "pocketsphinx-5.1.1/"


def pocketsphinx_sdist(args: argparse.Namespace) -> Path:
    if args.pocketsphinx_sdist:
        path = Path(args.pocketsphinx_sdist)
        if not path.is_file():
            raise SourceUnavailable(f"--pocketsphinx_sdist '{path}' does not exist")
        return path
    folder = Path(args.download_dir) / "pip"
    path = folder / "pocketsphinx-5.1.1.tar.gz"
    if path.is_file():
        return path
    if not args.fetch:
        raise SourceUnavailable(f"{path} is absent and --fetch false: pip download --no-deps --no-binary :all: "
                                f"{POCKETSPHINX} -d {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", POCKETSPHINX,
               "-d", str(folder)]
    print("real_speech: pocketsphinx: " + " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not path.is_file():
        raise SourceUnavailable(f"pip download of the {POCKETSPHINX} sdist failed: "
                                f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return path


def source_pocketsphinx(args: argparse.Namespace) -> tuple[list[Item], dict[str, str]]:
    sdist = pocketsphinx_sdist(args)
    wanted = re.compile(r"^(test/data/(librivox/[^/]+\.wav|librivox/transcription|cards/[^/]+\.wav|"
                        r"cards/cards\.transcription|goforward\.raw)|LICENSE)$")
    files: dict[str, bytes] = {}
    with tarfile.open(sdist) as tar:
        for member in tar:
            if member.isfile() and member.name.startswith(POCKETSPHINX_PREFIX):
                name = member.name[len(POCKETSPHINX_PREFIX):]
                if wanted.match(name):
                    files[name] = tar.extractfile(member).read()
    items = []
    for folder, speaker in (("librivox", "ps_librivox"), ("cards", "ps_cards")):
        transcription = files.get(f"test/data/{folder}/{'cards.' if folder == 'cards' else ''}transcription")
        if transcription is None:
            raise SourceUnavailable(f"{sdist} lacks test/data/{folder}'s transcription: not the 5.1.1 sdist?")
        for fileid, words in sorted(an4_transcripts(transcription.decode()).items()):
            name = f"test/data/{folder}/{fileid}.wav"
            if name not in files:
                raise SourceUnavailable(f"{sdist} lacks {name}")
            utt = clean_id(fileid.replace("sense_and_sensibility_01_austen_64kb-", "sas01_"))
            items.append(Item(speaker, utt, normalize_transcript(words),
                              lambda data=files[name], name=name: read_audio_bytes(data, name)))
    if "test/data/goforward.raw" not in files:
        raise SourceUnavailable(f"{sdist} lacks test/data/goforward.raw")
    items.append(Item("ps_goforward", "goforward", "go forward ten meters",
                      lambda: read_raw_pcm16le(files["test/data/goforward.raw"])))
    notices = {"LICENSE.pocketsphinx": files.get("LICENSE", b"").decode("utf-8", "replace"),
               "ORIGIN.txt": POCKETSPHINX_ORIGIN}
    return items, notices


POCKETSPHINX_ORIGIN = """Recordings from the PyPI source distribution pocketsphinx==5.1.1 (CMU Sphinx):
- ps_librivox-*: test/data/librivox/*.wav, LibriVox's recording of Jane Austen's "Sense and Sensibility",
  chapter 1 (sense_and_sensibility_01_austen_64kb.mp3); LibriVox recordings are in the public domain.
  Transcripts: test/data/librivox/transcription.
- ps_cards-*: test/data/cards/*.wav, playing-card names; CMU Sphinx test data under the package's BSD-2-Clause
  licence (LICENSE.pocketsphinx). Transcripts: test/data/cards/cards.transcription.
- ps_goforward-goforward: test/data/goforward.raw (16 kHz 16-bit little-endian mono PCM), CMU Sphinx's test
  utterance, BSD-2-Clause; transcript "go forward ten meters" as the package's tests assert.
"""


def debian_file_root(package: str, probe: str, args: argparse.Namespace) -> Path:
    """The folder holding `probe` (a path under usr/share) of Debian `package`: --deb_root if given, else / where
    the package is installed, else a copy extracted from the .deb that `apt-get download` fetches (--fetch true)."""
    if args.deb_root:
        if not (Path(args.deb_root) / probe).exists():
            raise SourceUnavailable(f"--deb_root {args.deb_root} has no {probe} (of Debian package {package}): "
                                    f"extract the package there with dpkg-deb -x {package}_*.deb {args.deb_root}")
        return Path(args.deb_root)
    for root in (Path("/"), Path(args.download_dir) / "debs" / "root"):
        if (root / probe).exists():
            return root
    if not args.fetch:
        raise SourceUnavailable(f"Debian package {package} is not installed (/{probe} is absent): install it "
                                f"(tools/install.sh --real_speech, or apt-get install {package}) or pass --deb_root")
    debs = Path(args.download_dir) / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{package}_*.deb")):
        if not shutil.which("apt-get"):
            raise SourceUnavailable(f"Debian package {package} is not installed and there is no apt-get to fetch it")
        print(f"real_speech: apt-get download {package} (in {debs})")
        done = subprocess.run(["apt-get", "download", package], cwd=debs, capture_output=True, text=True)
        if done.returncode != 0:
            raise SourceUnavailable(f"apt-get download {package} failed: "
                                    f"{(done.stderr.strip().splitlines() or ['?'])[-1]}; install it with "
                                    f"tools/install.sh --real_speech (root), or run 'apt-get update' first")
    deb = sorted(debs.glob(f"{package}_*.deb"))[-1]
    done = subprocess.run(["dpkg-deb", "-x", str(deb), str(debs / "root")], capture_output=True, text=True)
    if done.returncode != 0 or not (debs / "root" / probe).exists():
        raise SourceUnavailable(f"extracting {deb} failed ({done.stderr.strip()}) or it lacks /{probe}")
    return debs / "root"


def copyright_notice(root: Path, package: str) -> str:
    path = root / "usr/share/doc" / package / "copyright"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else \
        f"See the Debian package {package}'s copyright file.\n"


def file_items(speaker: str, entries: list[tuple[str, str, Path]]) -> list[Item]:
    return [Item(speaker, clean_id(name), normalize_transcript(words), lambda path=path: read_audio_file(path))
            for name, words, path in entries]


def source_alsa(args: argparse.Namespace) -> tuple[list[Item], dict[str, str]]:
    root = debian_file_root("alsa-utils", "usr/share/sounds/alsa/Front_Left.wav", args)
    entries = [(path.stem, path.stem.replace("_", " "), path)
               for path in sorted((root / "usr/share/sounds/alsa").glob("*.wav")) if path.stem != "Noise"]
    return file_items("alsa", entries), {"copyright.alsa-utils": copyright_notice(root, "alsa-utils")}


# KLettres: alpha/ holds the letters, syllab/ words and letter groups. Only the recordings that are whole English
# words are used; the letter names and sounds ('A', 'ch', 'aw': how to write them as words is not certain) are not.
KLETTRES_NOT_WORDS = {"aw", "ch", "th"}


def source_klettres(args: argparse.Namespace) -> tuple[list[Item], dict[str, str]]:
    root = debian_file_root("klettres-data", "usr/share/klettres/en/sounds.xml", args)
    items = []
    for voice, speaker in (("en", "klettres_en"), ("en_GB", "klettres_engb")):
        entries = [(path.stem, path.stem, path) for path in sorted((root / "usr/share/klettres" / voice /
                                                                    "syllab").glob("*.ogg"))
                   if path.stem.lower() not in KLETTRES_NOT_WORDS]
        items += file_items(speaker, entries)
    return items, {"copyright.klettres-data": copyright_notice(root, "klettres-data")}


# KTuberling: en/<theme>_<object>.ogg says the object's name. Names whose spoken form is not certain are left out.
KTUBERLING_UNCERTAIN = {"egypt_palmtree", "egypt_sphynx", "moon_fallingstar", "moon_moonwalker", "moon_ufo",
                        "pizzeria_broccolli"}


def source_ktuberling(args: argparse.Namespace) -> tuple[list[Item], dict[str, str]]:
    root = debian_file_root("ktuberling-data", "usr/share/ktuberling/sounds/en.soundtheme", args)
    entries = []
    for path in sorted((root / "usr/share/ktuberling/sounds/en").glob("*.ogg")):
        if path.stem in KTUBERLING_UNCERTAIN:
            continue
        word = re.sub(r"^(egypt|moon|pizzeria|tv)_", "", path.stem)
        entries.append((path.stem, word, path))
    notices = {"copyright.ktuberling-data": copyright_notice(root, "ktuberling-data")}
    return file_items("ktuberling_en", entries), notices


SOURCES: dict[str, Callable[[argparse.Namespace], tuple[list[Item], dict[str, str]]]] = {
    "an4": source_an4, "pocketsphinx": source_pocketsphinx, "alsa": source_alsa, "klettres": source_klettres,
    "ktuberling": source_ktuberling,
}


# ---------------------------------------------------------------------------------------------------------------
# Writing.

@dataclass
class SetSummary:
    name: str
    utterances: int
    speakers: int
    seconds: float
    words: int


def write_set(name: str, items: list[Item], notices: dict[str, str], args: argparse.Namespace) -> SetSummary:
    audio_dir = Path(args.download_dir) / name
    data_dir = Path(args.data_dir) / name
    ids = [item.utt_id for item in items]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise RuntimeError(f"{name}: duplicate utterance ids {duplicates[:3]}")
    data_dir.mkdir(parents=True, exist_ok=True)
    audio_dir.mkdir(parents=True, exist_ok=True)
    for file_name, text in notices.items():
        (audio_dir / file_name).write_text(text, encoding="utf-8")
    wav_scp, text, utt2spk, seconds = {}, {}, {}, 0.0
    for item in items:
        if not item.text:
            raise RuntimeError(f"{name}: utterance {item.utt_id} has an empty transcript")
        wav = audio_dir / "wav" / f"{item.utt_id}.wav"
        samples = to_16k_mono(*item.load())
        if not len(samples):
            raise RuntimeError(f"{name}: utterance {item.utt_id} has no samples")
        write_wav(wav, samples)
        wav_scp[item.utt_id] = str(wav)
        text[item.utt_id] = item.text
        utt2spk[item.utt_id] = item.speaker
        seconds += len(samples) / FS
    for file_name in ("segments", "utt2dur", "reco2file_and_channel", "feats.scp"):
        (data_dir / file_name).unlink(missing_ok=True)
    write_kv(data_dir / "wav.scp", wav_scp)
    write_kv(data_dir / "text", text)
    write_kv(data_dir / "utt2spk", utt2spk)
    write_kv(data_dir / "spk2utt", spk2utt_from_utt2spk(dict(sorted(utt2spk.items()))))
    return SetSummary(name, len(items), len(set(utt2spk.values())), seconds,
                      sum(len(t.split()) for t in text.values()))


def combine(name: str, sets: list[str], args: argparse.Namespace) -> SetSummary:
    merged: dict[str, dict[str, str]] = {"wav.scp": {}, "text": {}, "utt2spk": {}}
    for part in sets:
        for file_name, mapping in merged.items():
            for line in (Path(args.data_dir) / part / file_name).read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition(" ")
                mapping[key] = value
    data_dir = Path(args.data_dir) / name
    data_dir.mkdir(parents=True, exist_ok=True)
    for file_name, mapping in merged.items():
        write_kv(data_dir / file_name, mapping)
    write_kv(data_dir / "spk2utt", spk2utt_from_utt2spk(dict(sorted(merged["utt2spk"].items()))))
    seconds = sum(sf.info(path).frames / FS for path in merged["wav.scp"].values())
    return SetSummary(name, len(merged["text"]), len(set(merged["utt2spk"].values())), seconds,
                      sum(len(t.split()) for t in merged["text"].values()))


def validate(data_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "speechllm.data.validate", str(data_dir)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(MAIN_ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"utils/validate_data_dir.sh {data_dir} failed:\n{done.stdout}{done.stderr}")


def str2bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--download_dir", default="downloads", help="where fetched sources and the WAV files go")
    parser.add_argument("--data_dir", default="data", help="where the data dirs real_<source> go")
    parser.add_argument("--sets", default=",".join(ALL_SETS), help=f"sources to prepare, from {','.join(ALL_SETS)}")
    parser.add_argument("--prefix", default="real_", help="data dir name = PREFIX + source")
    parser.add_argument("--an4_archive", default=str(DEFAULT_AN4) if DEFAULT_AN4.exists() else None,
                        help="AN4 archive (.tar.gz) or folder holding an4/wav and an4/etc (default: the mini_an4 "
                             "archive of ../shared when present; without one the AN4 set is skipped)")
    parser.add_argument("--pocketsphinx_sdist", default=None,
                        help=f"the {POCKETSPHINX} sdist (default: DOWNLOAD_DIR/pip/, fetched with pip download)")
    parser.add_argument("--deb_root", default=None, help="a folder where Debian packages were extracted "
                        "(dpkg-deb -x), used when they are not installed")
    parser.add_argument("--fetch", type=str2bool, default=True,
                        help="fetch missing sources (pip download, apt-get download); false: skip them")
    parser.add_argument("--combined", default="real_all", help="data dir joining all sets made ('' for none)")
    parser.add_argument("--validate", type=str2bool, default=True, help="check each data dir (validate_data_dir)")
    parser.add_argument("--strict", type=str2bool, default=False,
                        help="fail (exit 1) when a source is unavailable, instead of skipping it with a note")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    chosen = [name.strip() for name in args.sets.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in SOURCES]
    if unknown:
        print(f"real_speech: error: unknown source(s) {unknown}; choose from {','.join(ALL_SETS)}", file=sys.stderr)
        return 2
    summaries, skipped = [], []
    for source in chosen:
        name = args.prefix + source
        try:
            items, notices = SOURCES[source](args)
        except SourceUnavailable as why:
            print(f"real_speech: NOTE: skipping {name}: {why}")
            skipped.append(name)
            continue
        summary = write_set(name, items, notices, args)
        if args.validate:
            validate(Path(args.data_dir) / name)
        summaries.append(summary)
        print(f"real_speech: wrote {Path(args.data_dir) / name} ({summary.utterances} utterances)")
    if args.combined and len(summaries) > 1:
        summary = combine(args.combined, [s.name for s in summaries], args)
        if args.validate:
            validate(Path(args.data_dir) / args.combined)
        summaries.append(summary)
    print("| set | utterances | speakers | seconds | words |\n| --- | ---: | ---: | ---: | ---: |")
    for s in summaries:
        print(f"| {s.name} | {s.utterances} | {s.speakers} | {s.seconds:.1f} | {s.words} |")
    if skipped:
        print(f"real_speech: skipped (see the notes above): {' '.join(skipped)}")
    return 1 if (skipped and args.strict) or not summaries else 0


if __name__ == "__main__":
    sys.exit(main())
