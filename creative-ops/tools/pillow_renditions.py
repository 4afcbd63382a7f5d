"""Time the `renditions` benchmark's work in Pillow, for comparison only.

Per job: decode the 1024x1024 PNG written by `cargo bench --bench renditions`
(target/bench-renditions/input.png), make three renditions (1:1 at 800x800,
9:16 at 540x960, 16:9 at 960x540: centre crop to the aspect, then Lanczos
downscale) and encode them. Prints milliseconds per job (median and mean of
RUNS jobs) for each output setting, and the output sizes.

Usage: python3 creative-ops/tools/pillow_renditions.py [input.png] [runs]
Needs Pillow (pip install pillow); not used by any test.
"""

import io
import statistics
import sys
import time

from PIL import Image

RENDITIONS = [((1, 1), (800, 800)), ((9, 16), (540, 960)), ((16, 9), (960, 540))]


def crop_box(w, h, aw, ah):
    """The largest centred box of aspect aw:ah in a w x h image."""
    r = aw / ah
    if w / h > r:
        cw, ch = round(h * r), h
    else:
        cw, ch = w, round(w / r)
    x, y = (w - cw) // 2, (h - ch) // 2
    return (x, y, x + cw, y + ch)


def job(data, fmt, opts):
    img = Image.open(io.BytesIO(data))
    img.load()
    sizes = []
    for (aw, ah), size in RENDITIONS:
        out = img.resize(size, Image.LANCZOS, box=crop_box(img.width, img.height, aw, ah))
        buf = io.BytesIO()
        out.save(buf, fmt, **opts)
        sizes.append(buf.tell())
    return sizes


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "target/bench-renditions/input.png"
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    data = open(path, "rb").read()
    cases = [
        ("png_default (zlib level 6)", "PNG", {}),
        ("png_level1", "PNG", {"compress_level": 1}),
        ("jpeg_q85", "JPEG", {"quality": 85}),
        ("webp_q80 (lossy, method 4)", "WEBP", {"quality": 80, "method": 4}),
    ]
    print(f"Pillow {Image.__version__ if hasattr(Image, '__version__') else ''}".strip())
    for name, fmt, opts in cases:
        sizes = job(data, fmt, opts)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            job(data, fmt, opts)
            times.append((time.perf_counter() - t) * 1000)
        print(
            f"{name}: median {statistics.median(times):.1f} ms/job, mean {statistics.mean(times):.1f} ms/job, "
            f"outputs {', '.join(f'{s} B' for s in sizes)}"
        )


if __name__ == "__main__":
    main()
