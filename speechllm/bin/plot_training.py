#!/usr/bin/env python3
"""Training curves of one or more model dirs, as PNG: per-step training loss and accuracy from ESPnet's train.log
(its ``Nepoch:train:A-Bbatch`` lines) and the per-epoch validation figures (its ``Nepoch results`` lines).

    python -m speechllm.bin.plot_training exp/model_a [exp/model_b ...] --out exp/plots/training_curves.png
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List

STEP_LINE = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch: (.*)")
EPOCH_LINE = re.compile(r"(\d+)epoch results: \[train\] (.*?) \[valid\] (.*?)(?:, time=|$)")
FIGURE = re.compile(r"(\w+)=([-+0-9.e]+)")


def figures(text: str) -> Dict[str, float]:
    return {k: float(v) for k, v in FIGURE.findall(text)}


def training_logs(model_dir: Path) -> List[Path]:
    """The logs of every run of a training, oldest first: train.log.1, train.log.2, ... (runs before a resume, kept
    by stage 8), then train.log."""
    earlier = [p for p in model_dir.glob("train.log.*") if p.suffix[1:].isdigit()]
    return sorted(earlier, key=lambda p: int(p.suffix[1:])) + [model_dir / "train.log"]


def read_log(*logs: Path) -> Dict[str, List]:
    """{"steps": [(global step, figures)], "epochs": [(epoch, train figures, valid figures)]} of one training's logs
    in order (a resumed run continues the step count)."""
    steps, epochs, offset, last_epoch, epoch_batches = [], [], 0, 0, 0
    text = "\n".join(log.read_text(encoding="utf-8", errors="replace") for log in logs)
    for line in text.splitlines():
        match = STEP_LINE.search(line)
        if match:
            epoch, _, last = int(match[1]), int(match[2]), int(match[3])
            if epoch != last_epoch:  # batches restart at 1 in each epoch: count steps across epochs
                offset += epoch_batches
                last_epoch = epoch
            epoch_batches = last
            steps.append((offset + last, figures(match[4])))
            continue
        match = EPOCH_LINE.search(line)
        if match:
            epochs.append((int(match[1]), figures(match[2]), figures(match[3])))
    return {"steps": steps, "epochs": epochs}


def plot(model_dirs: List[Path], out: Path, keys=("loss_llm", "acc")) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(keys), figsize=(5 * len(keys), 7), squeeze=False)
    for model_dir in model_dirs:
        log = model_dir / "train.log"
        if not log.is_file():
            raise FileNotFoundError(f"{log} does not exist: give model dirs that stage 8 (training) wrote")
        curves = read_log(*training_logs(model_dir))
        if not curves["steps"] and not curves["epochs"]:
            raise ValueError(f"{log} has no training progress lines yet")
        for column, key in enumerate(keys):
            points = [(step, f[key]) for step, f in curves["steps"] if key in f]
            if points:
                axes[0][column].plot(*zip(*points), label=model_dir.name)
            valid = [(epoch, v[key]) for epoch, _, v in curves["epochs"] if key in v]
            if valid:
                axes[1][column].plot(*zip(*valid), marker="o", label=model_dir.name)
    for column, key in enumerate(keys):
        axes[0][column].set(title=f"train {key} (per logged step)", xlabel="step")
        axes[1][column].set(title=f"valid {key} (per epoch)", xlabel="epoch")
        for row in (0, 1):
            axes[row][column].grid(alpha=0.3)
            axes[row][column].legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="the PNG file to write")
    parser.add_argument("--keys", default="loss_llm,acc", help="comma-separated figures to plot")
    args = parser.parse_args(argv)
    try:
        print(plot(args.model_dirs, args.out, tuple(args.keys.split(","))))
    except (FileNotFoundError, ValueError) as error:
        print(f"plot_training: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
