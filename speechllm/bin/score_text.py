"""Score Kaldi ``text`` files the ESPnet way: write trn files, run sclite (builtin or NIST), keep result.txt.

    python -m speechllm.bin.score_text --ref data/test/text --hyp decode/test/text \\
        --out_dir decode/test/score_wer [--unit word|char] [--normalize none|basic|whisper_en] \\
        [--scorer builtin|sclite] [--utt2spk data/test/utt2spk]

Writes OUT_DIR/ref.trn, OUT_DIR/hyp.trn and OUT_DIR/result.txt (the output of
``sclite -r ref.trn trn -h hyp.trn trn -i rm -e utf-8 [-c] -o all dtl stdout``: per-speaker
sys and raw tables, dtl details and pra alignments) and prints the Sum/Avg line.
With --utt2spk the trn ids are ``(speaker-uttid)`` as in ESPnet's asr.sh; without it the
utterance id must itself start with ``speaker-`` (or ``speaker_``).
Reference utterances without a hypothesis are scored as empty hypotheses (all
deletions); hypotheses without a reference are left out.  Both are counted and reported.
Utterances whose reference is empty (non-speech: utils/add_nonspeech.sh) are also counted in
OUT_DIR/nonspeech.yaml: how many got any output, and the words (or characters) inserted on them.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

from speechllm.data.datadir import sclite_unsafe
from speechllm.scoring.normalize import NORMALIZERS, get_normalizer
from speechllm.scoring.scorer import score, write_reports
from speechllm.scoring.trn import ScoringInputError, read_kaldi_text, read_utt2spk, write_trn

SCLITE_CANDIDATES = ("sclite", "/usr/lib/sctk/bin/sclite")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", type=Path, required=True, help="reference Kaldi text (uttid words...)")
    parser.add_argument("--hyp", type=Path, required=True, help="hypothesis Kaldi text (uttid words...)")
    parser.add_argument("--out_dir", type=Path, required=True, help="where ref.trn, hyp.trn, result.txt go")
    parser.add_argument("--unit", choices=("word", "char"), default="word",
                        help="word: WER; char: CER with sclite -c (spaces are not scored)")
    parser.add_argument("--normalize", choices=tuple(NORMALIZERS), default="none",
                        help="text normalisation applied to both sides before scoring")
    parser.add_argument("--scorer", choices=("builtin", "sclite"), default="builtin",
                        help="builtin: speechllm's sclite re-implementation; sclite: run NIST sclite")
    parser.add_argument("--sclite_bin", default=None, help="path of the NIST sclite binary (default: PATH, SCTK)")
    parser.add_argument("--utt2spk", type=Path, default=None, help="Kaldi utt2spk, for per-speaker tables")
    return parser


def trn_ids(uttids: list[str], utt2spk: dict[str, str] | None, utt2spk_path: Path | None) -> list[str]:
    """sclite ids: ``speaker-uttid`` from utt2spk (as ESPnet does), else the uttid itself."""
    if utt2spk is None:
        bad = [u for u in uttids if "-" not in u and "_" not in u]
        if bad:
            raise ScoringInputError(
                f"utterance id '{bad[0]}' (and {len(bad) - 1} more) has no '-' or '_', so sclite cannot tell "
                "its speaker; pass --utt2spk data/<set>/utt2spk"
            )
        return list(uttids)
    missing = [u for u in uttids if u not in utt2spk]
    if missing:
        raise ScoringInputError(f"{utt2spk_path}: no speaker for {len(missing)} utterance(s), e.g. '{missing[0]}'")
    return [f"{utt2spk[u]}-{u}" for u in uttids]


def check_sclite_ids(ids: list[str], path: Path, what: str = "utterance id") -> None:
    """Refuse ids that sclite's '(id)' cannot carry, naming the first (file order: line = position + 1)."""
    for lineno, key in enumerate(ids, start=1):
        why = sclite_unsafe(key)
        if why:
            raise ScoringInputError(
                f"{path}:{lineno}: {what} {key!r} contains {why}; trn lines end with '(id)', so sclite (and "
                "the builtin scorer) would misread it. Rename such ids without '(', ')' or whitespace in the data "
                "dir and in the hypotheses"
            )


def build_trn(ref: dict[str, str], hyp: dict[str, str], normalize: str, ids: list[str]) -> tuple[list, list, dict]:
    """Normalised (text, id) pairs in reference order, plus counts of mismatched ids."""
    norm = get_normalizer(normalize)
    missing_hyp = [u for u in ref if u not in hyp]
    extra_hyp = [u for u in hyp if u not in ref]
    ref_entries = [(norm(ref[u]), uid) for u, uid in zip(ref, ids)]
    hyp_entries = [(norm(hyp.get(u, "")), uid) for u, uid in zip(ref, ids)]
    return ref_entries, hyp_entries, {"missing_hyp": missing_hyp, "extra_hyp": extra_hyp}


def report_mismatches(mismatch: dict[str, list[str]], ref_path: Path, hyp_path: Path) -> None:
    if mismatch["missing_hyp"]:
        ids = mismatch["missing_hyp"]
        print(f"WARNING: {len(ids)} utterance(s) of {ref_path} have no hypothesis in {hyp_path}; "
              f"scored as empty hypotheses (all deletions), e.g. {', '.join(ids[:3])}", file=sys.stderr)
    if mismatch["extra_hyp"]:
        ids = mismatch["extra_hyp"]
        print(f"WARNING: {len(ids)} utterance(s) of {hyp_path} have no reference in {ref_path}; "
              f"not scored, e.g. {', '.join(ids[:3])}", file=sys.stderr)


def sclite_arguments(ref_trn: Path, hyp_trn: Path, unit: str) -> list[str]:
    args = ["-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm", "-e", "utf-8"]
    if unit == "char":
        args.append("-c")
    return args + ["-o", "all", "dtl", "stdout"]


def find_sclite(explicit: str | None) -> str:
    for candidate in ((explicit,) if explicit else SCLITE_CANDIDATES):
        found = shutil.which(candidate)
        if found:
            return found
    raise FileNotFoundError(
        f"NIST sclite not found ({explicit or ' or '.join(SCLITE_CANDIDATES)}); install it with "
        "'apt-get install -y sctk' (gives /usr/lib/sctk/bin/sclite), pass --sclite_bin, or use --scorer builtin"
    )


def run_scorer(scorer: str, args: list[str], sclite_bin: str | None) -> bytes:
    if scorer == "sclite":
        done = subprocess.run([find_sclite(sclite_bin), *args], capture_output=True, env={**os.environ})
        if done.returncode != 0:
            raise RuntimeError(f"sclite failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        return done.stdout
    from speechllm.bin.sclite import parse_args

    options = parse_args(args)
    buffer = io.BytesIO()
    write_reports(score(options), options, buffer)
    return buffer.getvalue()


def sum_avg_line(result: bytes) -> str:
    for line in result.decode("utf-8", errors="replace").splitlines():
        if "Sum/Avg" in line:
            return line.strip()
    raise RuntimeError("no 'Sum/Avg' line in the scorer output")


NONSPEECH_FILE = "nonspeech.yaml"


def nonspeech_insertions(ref_entries: list, hyp_entries: list, unit: str) -> dict | None:
    """On the utterances with an empty (normalised) reference: their number, how many got any output, and the
    tokens inserted; None when every reference has words."""
    empty = [hyp for (ref, _), (hyp, _) in zip(ref_entries, hyp_entries) if not ref.strip()]
    if not empty:
        return None
    inserted = [len(h.replace(" ", "")) if unit == "char" else len(h.split()) for h in empty]
    return {"utterances": len(empty), "with_output": sum(n > 0 for n in inserted), "inserted": sum(inserted),
            "unit": unit}


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        ref = read_kaldi_text(args.ref)
        hyp = read_kaldi_text(args.hyp)
        check_sclite_ids(list(ref), args.ref)
        check_sclite_ids(list(hyp), args.hyp)
        utt2spk = read_utt2spk(args.utt2spk) if args.utt2spk else None
        if utt2spk is not None:
            check_sclite_ids(list(utt2spk.values()), args.utt2spk, "speaker id")
        ids = trn_ids(list(ref), utt2spk, args.utt2spk)
        ref_entries, hyp_entries, mismatch = build_trn(ref, hyp, args.normalize, ids)
        report_mismatches(mismatch, args.ref, args.hyp)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        ref_trn, hyp_trn = args.out_dir / "ref.trn", args.out_dir / "hyp.trn"
        write_trn(ref_trn, ref_entries)
        write_trn(hyp_trn, hyp_entries)
        result = run_scorer(args.scorer, sclite_arguments(ref_trn, hyp_trn, args.unit), args.sclite_bin)
    except (ScoringInputError, FileNotFoundError, RuntimeError) as err:
        print(f"score_text: error: {err}", file=sys.stderr)
        return 1
    (args.out_dir / "result.txt").write_bytes(result)
    print(f"{args.unit} {args.scorer} {args.out_dir / 'result.txt'}: {sum_avg_line(result)}")
    insertions = nonspeech_insertions(ref_entries, hyp_entries, args.unit)
    (args.out_dir / NONSPEECH_FILE).unlink(missing_ok=True)
    if insertions:
        import yaml

        (args.out_dir / NONSPEECH_FILE).write_text(yaml.safe_dump(insertions, sort_keys=False), encoding="utf-8")
        print(f"non-speech (empty references): {insertions['with_output']} of {insertions['utterances']} got output, "
              f"{insertions['inserted']} {args.unit}s inserted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
