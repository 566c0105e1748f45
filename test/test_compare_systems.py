"""The side-by-side table of systems: WER per set from stage 10's reports, speed from the decoding jobs' logs."""
from pathlib import Path

import yaml

from speechllm.bin.compare_systems import main

RESULT = """| SPKR | # Snt # Wrd | Corr Sub Del Ins Err S.Err |
| Sum/Avg | {n} {words} | 80.0 15.0 5.0 {ins} {err} 40.0 |
"""


def scored_decode(root: Path, test_set: str, err: float, utterances: int, job_seconds=(10.0, 12.5)) -> Path:
    folder = root / test_set
    (folder / "score_wer").mkdir(parents=True)
    (folder / "score_wer/result.txt").write_text(RESULT.format(n=utterances, words=5 * utterances, ins=1.0, err=err))
    (folder / "text").write_text("".join(f"u{i} a b\n" for i in range(utterances)))
    (folder / "logdir").mkdir()
    for job, seconds in enumerate(job_seconds, 1):
        (folder / f"logdir/decode.{job}.log").write_text(f"# Ended (code 0) at X, elapsed time {seconds} seconds\n")
    return folder


def test_table_has_each_systems_wer_and_speed(tmp_path, capsys):
    for test_set, err in (("dev", 30.0), ("test", 25.0)):
        scored_decode(tmp_path / "am", test_set, err, 50)
        nbest = scored_decode(tmp_path / "nbest", test_set, err + 1, 50, job_seconds=(20.0,))
        rescored = tmp_path / "nbest_rescore" / test_set
        (rescored / "score_wer").mkdir(parents=True)
        (rescored / "score_wer/result.txt").write_text(RESULT.format(n=50, words=250, ins=0.0, err=err - 2))
        (rescored / "text").write_text("".join(f"u{i} a\n" for i in range(50)))
        (rescored / "rescoring.yaml").write_text(yaml.safe_dump({"nbest_dir": str(nbest), "lm_weight": 0.5,
                                                                 "length_bonus": 0.0}))
    (tmp_path / "nbest_rescore/rescore.log").write_text("# Ended (code 0) at X, elapsed time 5.0 seconds\n")
    out = tmp_path / "table.md"
    assert main(["--sets", "dev", "test", "--system", f"AM alone={tmp_path / 'am'}",
                 "--system", f"AM + LLM rescoring={tmp_path / 'nbest_rescore'}", "--output", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| system | dev WER (%) | test WER (%) | test utterances/s (wall) |"
    assert lines[2] == "| AM alone | 30.0 | 25.0 | 4.00 (50 in 12 s) |"  # the longest of the parallel jobs
    assert lines[3] == ("| AM + LLM rescoring (lm_weight 0.5, length_bonus 0, tuned on dev) | 28.0 | 23.0 | "
                        "2.00 (50 in 25 s) |")  # n-best decode 20 s + rescoring 5 s
    assert out.read_text().splitlines() == lines


def test_a_system_without_scores_is_named(tmp_path, capsys):
    scored_decode(tmp_path / "am", "dev", 30.0, 5)
    assert main(["--sets", "dev", "test", "--system", f"AM alone={tmp_path / 'am'}"]) == 1
    err = capsys.readouterr().err
    assert "system 'AM alone'" in err and "test/score_wer/result.txt is missing" in err and "stage 10" in err
    assert main(["--sets", "dev", "--system", "no equals sign"]) == 1
    assert "expected NAME=DECODE_ROOT" in capsys.readouterr().err
