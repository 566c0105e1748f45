"""Parity of speechllm's builtin scorer with NIST sclite on thousands of generated utterances.

Both programs score the same seeded random trn files with the same options; every
figure of the sys/raw tables, every per-utterance alignment of the pra report and
every count of the dtl report must be equal (and in fact the files are byte-identical).
"""
from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest

from conftest import require_program
from speechllm.bin.sclite import parse_args
from speechllm.scoring.scorer import render, score

pytestmark = pytest.mark.peer

SCLITE = "/usr/lib/sctk/bin/sclite"
REPORTS = {"sys": "sum", "raw": "rsum", "pra": "pralign", "dtl": "dtl"}


@pytest.fixture(scope="session")
def sclite_bin() -> str:
    """NIST sclite, or a skip saying how to install it (tests install nothing themselves)."""
    return require_program("sclite", str(Path(SCLITE).parent))


# ------------------------------------------------------------------ data

ACCENTED = ["café", "naïve", "Éclair", "über", "ÅSA", "straße", "façade", "smörgåsbord", "Ñandú"]
CJK = list("今天天气很好我们去公园吧的一是不了人在有他这中大来上个国")
SPECIAL = ["@", "uh;filler", "w\\;x", "abc*", "(um)", "-", "co-op"]
SPEAKERS = ["spk1", "spk2", "spk_3", "averyveryverylongspeakername", "s5", "s6", "silent1", "silent2"]


def _edit(rnd: random.Random, ref: list[str], vocab: list[str]) -> list[str]:
    """A hypothesis: random substitutions, deletions, insertions, case changes."""
    rate = rnd.choice([0.0, 0.05, 0.1, 0.3, 0.7])
    hyp: list[str] = []
    for word in ref:
        draw = rnd.random()
        if draw < rate / 3:
            hyp.append(rnd.choice(vocab))
        elif draw < 2 * rate / 3:
            continue
        elif draw < rate:
            hyp += [word, rnd.choice(vocab)]
        else:
            hyp.append(word.upper() if rnd.random() < 0.05 else word)
    if rnd.random() < 0.1:
        hyp.reverse()  # many equal-cost alignments: exercises tie-breaking
    return hyp


def word_corpus(rnd: random.Random, n: int) -> tuple[list[tuple[list[str], str]], list[tuple[list[str], str]]]:
    big = [f"w{i}" for i in range(400)] + ACCENTED + ["Hello", "WORLD", "MiXeD"]
    small = ["a", "b", "c", "the", "a", "uh"]  # repeated words, ties
    refs, hyps = [], []
    for u in range(n):
        spk = rnd.choice(SPEAKERS)
        vocab = rnd.choice([big, big, small, CJK, big + SPECIAL])
        length = rnd.choice([0, 1, 2, 3, 5, 8, 13, 21, 30]) if rnd.random() < 0.98 else rnd.randrange(100, 400)
        ref = [] if spk.startswith("silent") else [rnd.choice(vocab) for _ in range(length)]
        if vocab is CJK and rnd.random() < 0.5:  # words without spaces between characters
            ref = ["".join(ref[i:i + rnd.randrange(1, 5)]) for i in range(0, len(ref), 3)]
        draw = rnd.random()
        if draw < 0.05:
            hyp = []
        elif draw < 0.08:  # unrelated words
            hyp = [rnd.choice(vocab) for _ in range(rnd.randrange(6))]
        else:
            hyp = _edit(rnd, ref, vocab)
        uid = f"{spk}-utt{u:05d}"
        refs.append((ref, uid))
        if rnd.random() < 0.97:  # the rest have no hypothesis
            hyps.append((hyp, uid))
    rnd.shuffle(hyps)
    return refs, hyps


def char_corpus(rnd: random.Random, n: int):
    latin = [f"word{i}" for i in range(50)] + ACCENTED + ["well-known", "x-ray", "e-mail"]
    refs, hyps = [], []
    for u in range(n):
        spk = rnd.choice(SPEAKERS[:6])
        if rnd.random() < 0.4:
            ref = ["".join(rnd.choice(CJK) for _ in range(rnd.randrange(1, 30)))]
            hyp = ["".join(_edit(rnd, list(ref[0]), CJK))]
        else:
            ref = [rnd.choice(latin) for _ in range(rnd.randrange(0, 15))]
            hyp = _edit(rnd, ref, latin)
        refs.append((ref, f"{spk}-c{u:05d}"))
        hyps.append((hyp, f"{spk}-c{u:05d}"))
    return refs, hyps


def write_trn(path: Path, entries) -> None:
    path.write_text("".join(f"{' '.join(words)} ({uid})\n" for words, uid in entries), encoding="utf-8")


# ------------------------------------------------------------------ comparisons

def table_rows(sys_report: str) -> list[list[str]]:
    """The cells of every data row of an sclite summary table."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in sys_report.splitlines() if line.strip().startswith("|") and "-" * 5 not in line
            and "=" * 5 not in line]


def pra_blocks(pra: str) -> dict[str, str]:
    blocks = re.split(r"\n(?=id: )", pra)
    return {block.split("\n", 1)[0]: block.split("\nSpeaker sentences")[0] for block in blocks[1:]}


def dtl_counts(dtl: str) -> dict[str, str]:
    """Every 'label (count)' and every ranked 'N: count -> item' line of a dtl report."""
    counts, section = {}, ""
    for line in dtl.splitlines():
        if re.match(r"^[A-Z ]+ +Total", line):
            section = line.split("  ")[0]
        ranked = re.match(r"^ *\d+: +(\d+) +-> +(.*)$", line)
        if ranked:
            counts[f"{section}:{ranked.group(2)}"] = ranked.group(1)
        elif "(" in line and ")" in line:
            counts[f"{section}:{line.split('(')[0].strip()}"] = line.strip()
    return counts


def run_both(sclite_bin: str, tmp: Path, ref: Path, hyp: Path, options: list[str]) -> tuple[dict, dict]:
    out = tmp / f"sclite{len(list(tmp.iterdir()))}"
    out.mkdir()
    args = ["-r", str(ref), "trn", "-h", str(hyp), "trn", *options, "-o", "sum", "rsum", "pra", "dtl",
            "-O", str(out), "-n", "run", "-f", "0"]
    done = subprocess.run([sclite_bin, *args], capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    theirs = {ext: (out / f"run.{ext}").read_bytes().decode("utf-8", "replace") for ext in REPORTS}
    options = parse_args(args)
    scores = score(options)
    ours = {ext: render(scores, report, options.line_width).decode("utf-8", "replace")
            for ext, report in REPORTS.items()}
    return theirs, ours


def assert_parity(theirs: dict, ours: dict) -> dict[str, int]:
    compared = {}
    for ext in ("sys", "raw"):
        rows_theirs, rows_ours = table_rows(theirs[ext]), table_rows(ours[ext])
        assert rows_ours == rows_theirs
        compared[f"{ext} rows"] = len(rows_theirs)
    blocks_theirs, blocks_ours = pra_blocks(theirs["pra"]), pra_blocks(ours["pra"])
    assert blocks_ours.keys() == blocks_theirs.keys()
    for uid, block in blocks_theirs.items():
        assert blocks_ours[uid] == block, uid
    compared["alignments"] = len(blocks_theirs)
    counts_theirs, counts_ours = dtl_counts(theirs["dtl"]), dtl_counts(ours["dtl"])
    assert counts_ours == counts_theirs
    compared["dtl counts"] = len(counts_theirs)
    for ext in REPORTS:  # and nothing else differs either
        assert ours[ext] == theirs[ext], ext
    return compared


@pytest.mark.parametrize("options", [["-i", "rm"], ["-i", "wsj", "-s", "-l", "300"]], ids=["rm", "wsj-case-l300"])
def test_word_alignments_match_sclite(sclite_bin, tmp_path, options):
    refs, hyps = word_corpus(random.Random(20240611), 3000)
    write_trn(tmp_path / "ref.trn", refs)
    write_trn(tmp_path / "hyp.trn", hyps)
    (tmp_path / "runs").mkdir()
    theirs, ours = run_both(sclite_bin, tmp_path / "runs", tmp_path / "ref.trn", tmp_path / "hyp.trn", options)
    compared = assert_parity(theirs, ours)
    print(f"word {' '.join(options)}: {len(hyps)} utterances; compared {compared}")
    assert compared["alignments"] == len(hyps)


@pytest.mark.parametrize("options", [["-e", "utf-8", "-c"], ["-e", "utf-8", "-c", "NOASCII", "DH"], ["-c"]],
                         ids=["utf8-chars", "utf8-noascii-dh", "bytes"])
def test_character_alignments_match_sclite(sclite_bin, tmp_path, options):
    refs, hyps = char_corpus(random.Random(7), 1500)
    write_trn(tmp_path / "ref.trn", refs)
    write_trn(tmp_path / "hyp.trn", hyps)
    (tmp_path / "runs").mkdir()
    theirs, ours = run_both(sclite_bin, tmp_path / "runs", tmp_path / "ref.trn", tmp_path / "hyp.trn",
                            ["-i", "rm", *options])
    compared = assert_parity(theirs, ours)
    print(f"char {' '.join(options)}: {len(hyps)} utterances; compared {compared}")
    assert "# Chr" in ours["sys"]


def test_score_text_gives_the_same_result_with_either_scorer(sclite_bin, tmp_path):
    from speechllm.bin import score_text

    refs, hyps = word_corpus(random.Random(5), 500)
    (tmp_path / "text").write_text("".join(f"{uid} {' '.join(w)}\n" for w, uid in refs), encoding="utf-8")
    (tmp_path / "hyp").write_text("".join(f"{uid} {' '.join(w)}\n" for w, uid in hyps), encoding="utf-8")
    results = {}
    for unit in ("word", "char"):
        for scorer in ("builtin", "sclite"):
            args = ["--ref", str(tmp_path / "text"), "--hyp", str(tmp_path / "hyp"), "--out_dir", str(tmp_path / unit),
                    "--unit", unit, "--normalize", "basic", "--scorer", scorer, "--sclite_bin", sclite_bin]
            assert score_text.main(args) == 0
            results[unit, scorer] = (tmp_path / unit / "result.txt").read_bytes()
        assert results[unit, "builtin"] == results[unit, "sclite"], unit
