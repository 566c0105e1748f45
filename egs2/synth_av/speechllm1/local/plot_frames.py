#!/usr/bin/env python3
"""A PNG strip of one utterance's lip-ROI frames with the phoneme (and its viseme) under each frame.

    python3 local/plot_frames.py --data_dir data/test --utt us_m3_p45-test_00001 --out exp/frames.png

The frames come from the data dir's roi.scp; the phones from --phones, by default the file synthesize_av.py wrote
beside the array (<audio_dir>/phones/<split>/<utt>.txt for <audio_dir>/roi/<split>/<utt>.npy). The label under a
frame is the phone sounding at the frame's centre, without stress marks, and its viseme (the first for a diphthong,
"+" marking that a second follows).
"""
import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from speechllm.data import visemes  # noqa: E402
from speechllm.data.datadir import DataDirError, read_kv  # noqa: E402
from speechllm.data.video import ROI_FPS, VideoError, load_roi  # noqa: E402


def phone_at(phones, time):
    for phone in phones:
        if phone.start <= time < phone.end:
            return phone
    return phones[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="a data dir with roi.scp")
    parser.add_argument("--utt", help="utterance id (default: the first of roi.scp)")
    parser.add_argument("--phones", help="phone file (default: beside the ROI array, see above)")
    parser.add_argument("--first", type=int, default=0, help="first frame to show")
    parser.add_argument("--frames", type=int, default=36, help="number of frames to show")
    parser.add_argument("--per_row", type=int, default=12, help="frames per row")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    try:
        rois = read_kv(Path(args.data_dir) / "roi.scp")
    except (DataDirError, OSError) as error:
        sys.exit(f"plot_frames.py: {error}")
    utt = args.utt or next(iter(rois))
    if utt not in rois:
        sys.exit(f"plot_frames.py: utterance {utt!r} is not in {Path(args.data_dir) / 'roi.scp'}; give one of its ids")
    roi_path = Path(rois[utt])
    phones_path = Path(args.phones) if args.phones else roi_path.parents[2] / "phones" / roi_path.parent.name / (
        roi_path.stem + ".txt")
    try:
        frames = load_roi(str(roi_path))
        phones = visemes.read_phones(phones_path)
    except VideoError as error:
        sys.exit(f"plot_frames.py: {error.message}; {error.fix}")
    except (OSError, ValueError) as error:
        sys.exit(f"plot_frames.py: cannot read the phones ({error}); pass --phones")
    shown = list(range(args.first, min(len(frames), args.first + args.frames)))
    if not shown:
        sys.exit(f"plot_frames.py: --first {args.first} is beyond the {len(frames)} frames of {utt}")
    rows = (len(shown) + args.per_row - 1) // args.per_row
    figure, axes = plt.subplots(rows, args.per_row, figsize=(args.per_row * 1.1, rows * 1.45), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, shown):
        time = (index + 0.5) / ROI_FPS
        phone = phone_at(phones, time)
        names = visemes.visemes_of(phone.name)
        axis.imshow(frames[index], cmap="gray", vmin=0, vmax=255)
        axis.set_title(f"{index}: {phone.name.lstrip(chr(39) + ',')}", fontsize=8, pad=2)
        axis.text(48, 104, names[0] + ("+" if len(names) > 1 else ""), fontsize=6, ha="center", va="top")
    text = read_kv(Path(args.data_dir) / "text").get(utt, "")
    figure.suptitle(f"{utt}: \"{text}\" (frames {shown[0]}-{shown[-1]} of {len(frames)}, 25 fps)", fontsize=9)
    figure.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}: frames {shown[0]}-{shown[-1]} of {utt}")


if __name__ == "__main__":
    main()
