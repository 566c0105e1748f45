"""Speed of the lip encoder (speechllm.models.visual_frontend) on the CPU: seconds of compute per second of video.

    OMP_NUM_THREADS=1 tools/venv/bin/python bench/bench_visual_frontend.py [--seconds 2] [--repeats 3] [--threads 1]
        [--sizes resnet18 tiny] [--train]

Input: one utterance of random 96x96 uint8 lip ROIs at 25 fps. Prints, per size, its parameter count and the best
of ``--repeats`` runs of a forward pass in eval mode without gradients (decoding); with ``--train``, also a forward
and backward pass in train mode (training). A figure below 1 is faster than real time.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechllm.data.video import ROI_FPS, ROI_SIZE  # noqa: E402
from speechllm.models.visual_frontend import SIZES, VisualFrontend  # noqa: E402


def best_time(run, repeats: int) -> float:
    run()  # warm-up: allocations, oneDNN kernel choice
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="video length of the utterance")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--output_size", type=int, default=256)
    parser.add_argument("--train", action="store_true", help="also time forward + backward in train mode")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    frames = int(round(args.seconds * ROI_FPS))
    video = torch.randint(0, 256, (1, frames, ROI_SIZE, ROI_SIZE), dtype=torch.uint8)
    lengths = torch.tensor([frames])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {frames} frames "
          f"({args.seconds:g} s at {ROI_FPS} fps), output_size {args.output_size}, best of {args.repeats}")
    for size in args.sizes:
        frontend = VisualFrontend(output_size=args.output_size, size=size)
        parameters = sum(p.numel() for p in frontend.parameters())

        def forward():
            with torch.no_grad():
                frontend(video, lengths)

        def forward_backward():
            frontend.zero_grad()
            features, _ = frontend(video, lengths)
            features.sum().backward()

        frontend.eval()
        seconds = best_time(forward, args.repeats)
        line = (f"{size:9s} {parameters / 1e6:6.2f} M parameters  forward (eval, no grad): "
                f"{seconds / args.seconds:.3f} s per second of video")
        if args.train:
            frontend.train()
            seconds = best_time(forward_backward, args.repeats)
            line += f"  forward+backward (train): {seconds / args.seconds:.3f} s per second of video"
        print(line, flush=True)


if __name__ == "__main__":
    main()
