"""egs2/synth_english/speechllm1/local/real_speech.py: real English test sets from AN4, the pocketsphinx sdist and
Debian packages, prepared here from small fixture files laid out as the real sources are, and from the real sources
themselves when this machine has them."""
import importlib.util
import io
import subprocess
import sys
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "synth_english" / "speechllm1"


def load_module():
    spec = importlib.util.spec_from_file_location("real_speech", RECIPE / "local" / "real_speech.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_speech"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


rs = load_module()


def tone(seconds: float, fs: int, channels: int = 1, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    mono = 0.3 * np.sin(2 * np.pi * freq * t) * np.hanning(len(t))
    return np.repeat(mono[:, None], channels, axis=1)


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def encoded(samples: np.ndarray, fs: int, **kwargs) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, fs, **kwargs)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """AN4 and pocketsphinx archives and an extracted Debian tree, each in the real layout, with decoys that must be
    left out (audio without transcript, TIDIGITS, phonics, uncertain names, the alsa noise)."""
    root = tmp_path_factory.mktemp("sources")
    an4 = root / "downloads.tar.gz"
    with tarfile.open(an4, "w:gz") as tar:
        add_bytes(tar, "downloads/an4/LICENSE", b"AN4 License Terms (fixture)\n")
        add_bytes(tar, "downloads/an4/etc/an4_train.transcription",
                  b"<s> YES </s> (an1-fxyz-b)\n<s> NO AUDIO </s> (an2-fxyz-b)\n")
        add_bytes(tar, "downloads/an4/etc/an4_test.transcription", b"TWENTY ONE (cen1-mabc-b)\n")
        add_bytes(tar, "downloads/an4/wav/an4_clstk/fxyz/an1-fxyz-b.sph",
                  encoded(tone(0.5, 16000), 16000, format="NIST", subtype="PCM_16", endian="LITTLE"))
        # Big-endian SPHERE, as some AN4 files are ("sample_byte_format -s2 10").
        add_bytes(tar, "downloads/an4/wav/an4test_clstk/mabc/cen1-mabc-b.sph",
                  encoded(tone(0.75, 16000), 16000, format="NIST", subtype="PCM_16", endian="BIG"))
        add_bytes(tar, "downloads/an4/wav/an4_clstk/fxyz/an9-fxyz-b.sph",  # no transcript: not used
                  encoded(tone(0.2, 16000), 16000, format="NIST", subtype="PCM_16"))
    sdist = root / "pocketsphinx-5.1.1.tar.gz"
    prefix = "pocketsphinx-5.1.1/"
    wav16 = encoded(tone(1.0, 16000), 16000, format="WAV", subtype="PCM_16")
    with tarfile.open(sdist, "w:gz") as tar:
        add_bytes(tar, prefix + "LICENSE", b"Copyright (c) 1999-2016 Carnegie Mellon University (fixture)\n")
        add_bytes(tar, prefix + "test/data/librivox/transcription",
                  b"<s> and mister john dashwood had then leisure </s> (sense_and_sensibility_01_austen_64kb-0870)\n")
        add_bytes(tar, prefix + "test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav", wav16)
        add_bytes(tar, prefix + "test/data/cards/cards.transcription", b"<s> ten of clubs  </s> (001)\n")
        add_bytes(tar, prefix + "test/data/cards/001.wav", wav16)
        add_bytes(tar, prefix + "test/data/goforward.raw", (tone(0.5, 16000)[:, 0] * 32767).astype("<i2").tobytes())
        add_bytes(tar, prefix + "test/data/tidigits/dhd.2934z.raw", b"\0\0" * 800)  # LDC: never used
        add_bytes(tar, prefix + "test/data/numbers.raw", b"\0\0" * 800)  # no transcript: never used
    deb = root / "deb"
    alsa = deb / "usr/share/sounds/alsa"
    alsa.mkdir(parents=True)
    sf.write(alsa / "Front_Left.wav", tone(0.6, 48000), 48000, subtype="PCM_16")
    sf.write(alsa / "Noise.wav", tone(0.6, 48000), 48000, subtype="PCM_16")
    klettres = deb / "usr/share/klettres"
    for voice, names, channels in (("en", ["car", "ch"], 1), ("en_GB", ["dog"], 2)):
        (klettres / voice / "syllab").mkdir(parents=True)
        for name in names:
            sf.write(klettres / voice / "syllab" / f"{name}.ogg", tone(0.4, 44100, channels), 44100,
                     format="OGG", subtype="VORBIS")
    (klettres / "en" / "sounds.xml").write_text("<klettres/>\n")
    ktuberling = deb / "usr/share/ktuberling/sounds"
    (ktuberling / "en").mkdir(parents=True)
    (ktuberling / "en.soundtheme").write_text("<language code='en'/>\n")
    for name in ("egypt_camel", "moon_ufo", "ball"):
        sf.write(ktuberling / "en" / f"{name}.ogg", tone(0.3, 8000), 8000, format="OGG", subtype="VORBIS")
    for package in ("alsa-utils", "klettres-data", "ktuberling-data"):
        (deb / "usr/share/doc" / package).mkdir(parents=True)
        (deb / "usr/share/doc" / package / "copyright").write_text(f"{package} copyright (fixture)\n")
    return {"an4": an4, "sdist": sdist, "deb": deb}


def read_kv(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def test_transcript_normalisation_and_ids():
    assert rs.normalize_transcript("A red Kangaroo.") == "a red kangaroo"
    assert rs.normalize_transcript("Go forward 10 meters, don't stop!") == "go forward ten meters don't stop"
    assert rs.normalize_transcript("cold-hearted 'quoted' 1970") == \
        "cold hearted quoted one thousand nine hundred seventy"
    assert rs.number_words(0) == "zero" and rs.number_words(21) == "twenty one"
    assert rs.number_words(1_000_005) == "one million five"
    assert rs.clean_id("Front_Left") == "front_left" and rs.clean_id("an251-fash-b") == "an251_fash_b"
    assert rs.an4_transcripts("<s> YES </s> (an251-fash-b)\nELEVEN ++NOISE++ FIFTY (cen8-fcaw-b)\n") == \
        {"an251-fash-b": "YES", "cen8-fcaw-b": "ELEVEN FIFTY"}


def test_prepares_every_source_from_fixtures(fixtures, tmp_path, capsys):
    data, downloads = tmp_path / "data", tmp_path / "downloads"
    code = rs.main(["--download_dir", str(downloads), "--data_dir", str(data), "--an4_archive", str(fixtures["an4"]),
                    "--pocketsphinx_sdist", str(fixtures["sdist"]), "--deb_root", str(fixtures["deb"]),
                    "--fetch", "false"])
    out = capsys.readouterr().out
    assert code == 0, out
    texts = {name: read_kv(data / name / "text") for name in
             ("real_an4", "real_pocketsphinx", "real_alsa", "real_klettres", "real_ktuberling", "real_all")}
    assert texts["real_an4"] == {"an4_fxyz-an1_fxyz_b": "yes", "an4_mabc-cen1_mabc_b": "twenty one"}
    assert texts["real_pocketsphinx"] == {
        "ps_cards-001": "ten of clubs", "ps_goforward-goforward": "go forward ten meters",
        "ps_librivox-sas01_0870": "and mister john dashwood had then leisure"}
    assert texts["real_alsa"] == {"alsa-front_left": "front left"}
    assert texts["real_klettres"] == {"klettres_en-car": "car", "klettres_engb-dog": "dog"}
    assert texts["real_ktuberling"] == {"ktuberling_en-ball": "ball", "ktuberling_en-egypt_camel": "camel"}
    assert len(texts["real_all"]) == 10
    assert "| real_all | 10 | 9 |" in out
    for name in texts:
        folder = data / name
        for file_name in ("wav.scp", "text", "utt2spk", "spk2utt"):
            lines = (folder / file_name).read_text().splitlines()
            keys = [line.split(" ", 1)[0] for line in lines]
            assert keys == sorted(keys, key=lambda k: k.encode()), (name, file_name)
        for utt, spk in read_kv(folder / "utt2spk").items():
            assert utt.startswith(spk + "-") and "(" not in utt and ")" not in utt
        subprocess.run([str(REPO / "utils" / "validate_data_dir.sh"), str(folder)], check=True, capture_output=True)
    # 16 kHz mono 16-bit WAV, durations kept through resampling; the big-endian SPHERE read in the right order.
    wav_scp = read_kv(data / "real_all" / "wav.scp")
    expected = {"alsa-front_left": 0.6, "klettres_engb-dog": 0.4, "ktuberling_en-ball": 0.3,
                "an4_mabc-cen1_mabc_b": 0.75, "ps_goforward-goforward": 0.5}
    for utt, seconds in expected.items():
        with wave.open(wav_scp[utt]) as stream:
            assert (stream.getframerate(), stream.getnchannels(), stream.getsampwidth()) == (16000, 1, 2)
            assert abs(stream.getnframes() / 16000 - seconds) < 0.002, utt
    big_endian, _ = sf.read(wav_scp["an4_mabc-cen1_mabc_b"])
    assert np.abs(big_endian - tone(0.75, 16000)[:, 0]).max() < 1e-3
    # Licence notices travel with the audio.
    assert "AN4 License Terms" in (downloads / "real_an4" / "LICENSE.an4").read_text()
    assert "Carnegie Mellon" in (downloads / "real_pocketsphinx" / "LICENSE.pocketsphinx").read_text()
    assert "LibriVox" in (downloads / "real_pocketsphinx" / "ORIGIN.txt").read_text()
    assert (downloads / "real_ktuberling" / "copyright.ktuberling-data").is_file()


def test_missing_sources_are_skipped_with_a_note(tmp_path, capsys):
    code = rs.main(["--download_dir", str(tmp_path / "dl"), "--data_dir", str(tmp_path / "data"), "--sets", "an4",
                    "--an4_archive", str(tmp_path / "absent.tar.gz")])
    out = capsys.readouterr().out
    assert code == 1 and "NOTE: skipping real_an4" in out and "--an4_archive" in out
    assert not (tmp_path / "data" / "real_an4").exists()
    code = rs.main(["--download_dir", str(tmp_path / "dl"), "--data_dir", str(tmp_path / "data"),
                    "--sets", "klettres", "--deb_root", str(tmp_path)])
    assert code == 1 and "dpkg-deb -x" in capsys.readouterr().out
    assert rs.main(["--sets", "tidigits"]) == 2


# ---------------------------------------------------------------------------------------------------------------
# The real sources, where this machine has them.

def test_real_mini_an4(shared_dir, tmp_path):
    archive = shared_dir / "corpora" / "mini_an4" / "downloads.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent")
    assert rs.main(["--download_dir", str(tmp_path), "--data_dir", str(tmp_path / "data"), "--sets", "an4",
                    "--an4_archive", str(archive)]) == 0
    text = read_kv(tmp_path / "data" / "real_an4" / "text")
    assert len(text) == 7 and len(set(read_kv(tmp_path / "data" / "real_an4" / "utt2spk").values())) == 5
    assert text["an4_fash-an251_fash_b"] == "yes"
    assert text["an4_mmxg-cen8_mmxg_b"] == "october twenty four nineteen seventy"


def test_real_pocketsphinx_sdist(tmp_path):
    candidates = [RECIPE / "downloads" / "pip" / "pocketsphinx-5.1.1.tar.gz"]
    sdist = next((path for path in candidates if path.is_file()), None)
    if sdist is None:
        pytest.skip(f"no pocketsphinx 5.1.1 sdist at {candidates[0]} (local/real_speech.py fetches it there)")
    assert rs.main(["--download_dir", str(tmp_path), "--data_dir", str(tmp_path / "data"), "--sets", "pocketsphinx",
                    "--pocketsphinx_sdist", str(sdist)]) == 0
    text = read_kv(tmp_path / "data" / "real_pocketsphinx" / "text")
    assert len(text) == 11
    assert text["ps_librivox-sas01_0880"] == "he was not an ill disposed young man"
    assert text["ps_cards-005"] == "eight of spades four of clubs seven of hearts"
    assert not any("tidigits" in key or "numbers" in key for key in text)


@pytest.mark.parametrize("source,probe,count", [
    ("alsa", "/usr/share/sounds/alsa/Front_Left.wav", 8),
    ("klettres", "/usr/share/klettres/en/sounds.xml", 39),
    ("ktuberling", "/usr/share/ktuberling/sounds/en.soundtheme", 66),
])
def test_real_debian_packages(source, probe, count, tmp_path):
    if not Path(probe).exists():
        pytest.skip(f"{probe} is absent: tools/install.sh --real_speech installs the Debian packages")
    assert rs.main(["--download_dir", str(tmp_path), "--data_dir", str(tmp_path / "data"), "--sets", source,
                    "--fetch", "false"]) == 0
    text = read_kv(tmp_path / "data" / f"real_{source}" / "text")
    assert len(text) == count
    assert all(words and words == words.lower() for words in text.values())


def test_script_runs_from_the_recipe_dir(tmp_path):
    """As a user runs it: python3 local/real_speech.py --help in the recipe dir."""
    done = subprocess.run([sys.executable, "local/real_speech.py", "--help"], cwd=RECIPE, capture_output=True,
                          text=True)
    assert done.returncode == 0 and "--an4_archive" in done.stdout
