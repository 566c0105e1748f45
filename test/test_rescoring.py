"""N-best rescoring with a causal LM: batched LM scores equal one-at-a-time recomputation, the combined score picks
the candidate, tuning finds the weights that lower dev WER, and bad input is named."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from speechllm.data.datadir import write_kv
from speechllm.decoding.rescoring import Candidate, add_lm_scores, lm_logprobs, read_nbest, rescore, tune
from speechllm.models.llm import load_causal_lm, load_tokenizer
from test_model import tokens_dir  # noqa: F401 (fixture)
from test_search_scorers import lm_logprob


@pytest.fixture(scope="module")
def lm(tokens_dir):  # noqa: F811
    return load_causal_lm(str(tokens_dir / "llm"), finetune="frozen").eval(), load_tokenizer(str(tokens_dir / "llm"))


def write_decode(folder, ranked):
    """ranked: [{key: (text, score)}, ...] best first, in stage 9's layout."""
    for rank, hyps in enumerate(ranked, 1):
        target = folder if rank == 1 else folder / f"{rank}best_recog"
        target.mkdir(parents=True, exist_ok=True)
        write_kv(target / "text", {k: t for k, (t, _) in hyps.items()})
        write_kv(target / "score", {k: f"{s:.4f}" for k, (_, s) in hyps.items()})


def test_batched_lm_scores_equal_each_text_alone(lm):
    model, tokenizer = lm
    texts = ["yes", "two five seven", "r u b o u t", "enter fifty two", "no"]
    batched = lm_logprobs(model, tokenizer, texts, batch_size=3)
    for text, score in zip(texts, batched):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert score == pytest.approx(lm_logprob(model, tokenizer.bos_token_id, ids, tokenizer.eos_token_id), abs=1e-4)
    assert len(set(round(s, 3) for s in batched)) == len(texts)


def test_rescoring_picks_the_best_combined_score_and_tuning_lowers_dev_wer(lm, tmp_path):
    model, tokenizer = lm
    # The first pass prefers a garbled text by a little; the toy LM (pretrained on these sentences) prefers the right
    # one (by 4 to 13 nats; it favours short texts otherwise, so the wrong ones are as long or longer).
    refs = {"u1": "one two three four five", "u2": "erase rubout repeat", "u3": "enter five stop yes no"}
    wrong = {"u1": "one two three four four", "u2": "erase rubout rubout repeat", "u3": "enter five stop yes yes"}
    write_decode(tmp_path / "dev", [{k: (wrong[k], -1.0) for k in refs}, {k: (refs[k], -1.5) for k in refs}])
    nbest = read_nbest(str(tmp_path / "dev"), keys=list(refs))
    assert [c.text for c in nbest["u1"]] == [wrong["u1"], refs["u1"]]
    add_lm_scores(nbest, model, tokenizer)
    for cands in nbest.values():
        for weight, bonus in ((0.0, 0.0), (0.4, -0.2), (1.0, 0.5)):
            best = rescore({"k": cands}, weight, bonus)["k"]
            assert best.combined(weight, bonus) == max(c.score + weight * c.lm_logprob + bonus * len(c.text.split())
                                                       for c in cands)
    assert {k: c.text for k, c in rescore(nbest, 0.0).items()} == wrong  # weight 0: the first pass
    weight, bonus, grid = tune(nbest, refs, str, [0.0, 0.5, 1.0, 2.0], [0.0])
    assert len(grid) == 4 and grid[0][2] > 0
    assert weight > 0 and min(row[2] for row in grid) == 0.0
    assert {k: c.text for k, c in rescore(nbest, weight, bonus).items()} == refs


def test_bad_input_is_named(lm, tmp_path):
    write_decode(tmp_path / "d", [{"u1": ("a", -1.0)}])
    with pytest.raises(ValueError, match=r"d: 1 of 2 utterances have no hypothesis, e.g. u2"):
        read_nbest(str(tmp_path / "d"), keys=["u1", "u2"])
    with pytest.raises(FileNotFoundError, match="decode first"):
        read_nbest(str(tmp_path / "nowhere"))
    (tmp_path / "d/score").write_text("u1 high\n")
    with pytest.raises(ValueError, match=r"d/score: utterance u1: 'high' is not a number"):
        read_nbest(str(tmp_path / "d"))
    with pytest.raises(ValueError, match="lm_weight must be >= 0"):
        rescore({"u1": [Candidate("a", 0.0)]}, -0.5)
    with pytest.raises(ValueError, match="have no reference, e.g. u1"):
        tune({"u1": [Candidate("a", 0.0)]}, {}, str, [0.0], [0.0])


def test_command_tunes_on_dev_and_rescores_test(lm, tokens_dir, tmp_path):  # noqa: F811
    refs = {"u1": "one two three four five", "u2": "erase rubout repeat"}
    write_kv(tmp_path / "dev_text", refs)
    first = {"u1": ("one two three four four", -1.0), "u2": ("erase rubout rubout repeat", -1.0)}
    write_decode(tmp_path / "dev", [first, {k: (t, -1.5) for k, t in refs.items()}])
    write_decode(tmp_path / "test", [{"t1": ("enter five stop yes yes", -1.0)},
                                     {"t1": ("enter five stop yes no", -1.4)}])
    result = subprocess.run(
        [sys.executable, "-m", "speechllm.bin.rescore_nbest", "--lm", str(tokens_dir / "llm"), "--nbest_dir",
         str(tmp_path / "test"), "--output_dir", str(tmp_path / "out"), "--tune_nbest_dir", str(tmp_path / "dev"),
         "--tune_ref", str(tmp_path / "dev_text"), "--lm_weights", "0,1,2", "--length_bonuses", "0"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = yaml.safe_load((tmp_path / "out/rescoring.yaml").read_text())
    assert record["lm_weight"] > 0 and len(record["grid"]) == 3
    assert (tmp_path / "out/text").read_text() == "t1 enter five stop yes no\n"
    missing = subprocess.run(
        [sys.executable, "-m", "speechllm.bin.rescore_nbest", "--lm", str(tokens_dir / "llm"), "--nbest_dir",
         str(tmp_path / "nothing"), "--output_dir", str(tmp_path / "out2")],
        capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1 and "nothing/text is missing" in missing.stderr
    # Several sets in one call (as the recipe rescores): tuned once, each written as if rescored alone.
    both = subprocess.run(
        [sys.executable, "-m", "speechllm.bin.rescore_nbest", "--lm", str(tokens_dir / "llm"),
         "--nbest_dir", str(tmp_path / "dev"), "--output_dir", str(tmp_path / "both/dev"),
         "--nbest_dir", str(tmp_path / "test"), "--output_dir", str(tmp_path / "both/test"),
         "--tune_nbest_dir", str(tmp_path / "dev"), "--tune_ref", str(tmp_path / "dev_text"),
         "--lm_weights", "0,1,2", "--length_bonuses", "0"], capture_output=True, text=True, timeout=300)
    assert both.returncode == 0, both.stderr
    assert (tmp_path / "both/test/text").read_text() == (tmp_path / "out/text").read_text()
    assert [line.split()[0] for line in (tmp_path / "both/dev/text").read_text().splitlines()] == ["u1", "u2"]
    assert yaml.safe_load((tmp_path / "both/test/rescoring.yaml").read_text()) == record
    unpaired = subprocess.run(
        [sys.executable, "-m", "speechllm.bin.rescore_nbest", "--lm", "x", "--nbest_dir", "a", "--nbest_dir", "b",
         "--output_dir", "c"], capture_output=True, text=True, timeout=300)
    assert unpaired.returncode == 2 and "--nbest_dir and --output_dir go in pairs: got 2 and 1" in unpaired.stderr
