"""The plotting scripts: training curves read every run of a resumed training, in order, and draw a PNG."""
from pathlib import Path

from speechllm.bin.plot_training import plot, read_log, training_logs


def epoch_lines(epoch: int, acc: float) -> str:
    steps = "".join(f"[vm] x INFO: {epoch}epoch:train:{a}-{a + 9}batch: loss_llm={5 - epoch:.1f}, acc={acc:.2f}\n"
                    for a in (1, 11))
    return steps + (f"[vm] x INFO: {epoch}epoch results: [train] loss_llm=1.0, acc={acc:.2f}, "
                    f"[valid] loss_llm=2.0, acc={acc:.2f}, time=1 minute\n")


def test_a_resumed_training_is_read_from_all_its_logs_in_order(tmp_path: Path):
    (tmp_path / "train.log.1").write_text(epoch_lines(1, 0.2) + epoch_lines(2, 0.3))
    (tmp_path / "train.log.2").write_text(epoch_lines(3, 0.4))  # resumed once
    (tmp_path / "train.log").write_text(epoch_lines(4, 0.5))  # and again
    (tmp_path / "train.log.notes").write_text(epoch_lines(9, 0.9))  # not a run's log
    logs = training_logs(tmp_path)
    assert [p.name for p in logs] == ["train.log.1", "train.log.2", "train.log"]
    curves = read_log(*logs)
    assert [e for e, _, _ in curves["epochs"]] == [1, 2, 3, 4]
    assert [v["acc"] for _, _, v in curves["epochs"]] == [0.2, 0.3, 0.4, 0.5]
    assert [s for s, _ in curves["steps"]] == [10, 20, 30, 40, 50, 60, 70, 80]  # the step count goes on
    out = plot([tmp_path], tmp_path / "plots/curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
