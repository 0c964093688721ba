"""Drive the demo's real window on an X display (run under ``xvfb-run`` by tests/test_demo_window.py).

    python tests/xvfb_driver.py OUT_DIR SCENARIO -- DEMO_ARGS...

Starts ``python -m demo_style_transfer DEMO_ARGS``, finds its window with xdotool, takes
screenshots with ``xwd`` (read here: 32-bit ZPixmap) and sends keys to the window with xdotool.
Scenarios: ``live`` (wait for a stylized frame, screenshot, 'n', screenshot, resize the window,
screenshot, 'q'), ``quit-early``
(once the kernels compile: a screenshot of the loading screen, then 'q'). Writes OUT_DIR/result.json and the screenshots
as .npy (u8[h, w, 3] BGR).
"""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TITLE = "mobile-engine style transfer"


def read_xwd(path: Path) -> np.ndarray:
    """u8[h, w, 3] BGR of an xwd dump (ZPixmap, 32 bits per pixel, as Xvfb's 24-bit screen)."""
    data = path.read_bytes()
    h = struct.unpack(">25I", data[:100])
    header_size, width, height = h[0], h[4], h[5]
    byte_order, bits_per_pixel, bytes_per_line, ncolors = h[7], h[11], h[12], h[19]
    if bits_per_pixel != 32:
        raise SystemExit(f"xwd: {bits_per_pixel} bits per pixel; expected 32")
    offset = header_size + ncolors * 12
    rows = np.frombuffer(data, np.uint8, count=bytes_per_line * height, offset=offset)
    px = rows.reshape(height, bytes_per_line)[:, :width * 4].reshape(height, width, 4)
    return np.ascontiguousarray(px[:, :, :3] if byte_order == 0 else px[:, :, 3:0:-1])


def xdotool(*args: str, timeout: float = 30) -> str:
    return subprocess.run(["xdotool", *args], capture_output=True, text=True,
                          timeout=timeout).stdout.strip()


def screenshot(wid: str, path: Path) -> np.ndarray:
    subprocess.run(["xwd", "-id", wid, "-silent", "-out", str(path)], check=True, timeout=30)
    image = read_xwd(path)
    path.unlink()
    return image


def geometry(wid: str) -> tuple[int, int]:
    out = xdotool("getwindowgeometry", "--shell", wid)
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return int(values["WIDTH"]), int(values["HEIGHT"])


def find_window(proc: subprocess.Popen, timeout: float) -> str:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise SystemExit(f"the demo ended (exit {proc.returncode}) before its window showed")
        ids = xdotool("search", "--name", TITLE).split()
        if ids:
            return ids[-1]
        time.sleep(0.2)
    raise SystemExit(f"no demo window after {timeout:.0f} s")


def stylized(image: np.ndarray) -> bool:
    """The right half is a picture (not black) that differs from the left half."""
    w = image.shape[1] // 2
    left, right = image[:, :w].astype(int), image[:, w:2 * w].astype(int)
    return right.mean() > 20 and np.abs(right - left).mean() > 20


def key(wid: str, name: str) -> None:
    xdotool("windowactivate", "--sync", wid)
    xdotool("key", "--window", wid, name)


def main() -> int:
    out_dir, scenario = Path(sys.argv[1]), sys.argv[2]
    demo_args = sys.argv[sys.argv.index("--") + 1:]
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "demo.log", "w")
    proc = subprocess.Popen([sys.executable, "-u", "-m", "demo_style_transfer", *demo_args],
                            stdout=log, stderr=subprocess.STDOUT)
    result: dict = {"scenario": scenario}
    try:
        wid = find_window(proc, 120)
        result["first_geometry"] = geometry(wid)
        shot = out_dir / "shot.xwd"
        if scenario == "quit-early":
            t_end = time.monotonic() + 300      # until the kernels start compiling
            while "  kernels: " not in (out_dir / "demo.log").read_text() \
                    and time.monotonic() < t_end and proc.poll() is None:
                time.sleep(0.2)
            time.sleep(1.0)
            first = screenshot(wid, shot)
            np.save(out_dir / "loading.npy", first)
            t0 = time.monotonic()
            key(wid, "q")
            result["exit_code"] = proc.wait(30)
            result["quit_seconds"] = time.monotonic() - t0
        else:
            t_end = time.monotonic() + 600
            image = screenshot(wid, shot)
            while not stylized(image) and time.monotonic() < t_end and proc.poll() is None:
                time.sleep(0.5)
                image = screenshot(wid, shot)
            time.sleep(1.0)                       # a few more frames: the HUD's fps settles
            result["geometry"] = geometry(wid)
            np.save(out_dir / "live.npy", screenshot(wid, shot))
            key(wid, "n")                         # next style
            time.sleep(2.0)
            np.save(out_dir / "next_style.npy", screenshot(wid, shot))
            w, h = result["geometry"]
            xdotool("windowsize", "--sync", wid, str(w * 3 // 2), str(h * 5 // 2))  # taller
            time.sleep(1.5)
            result["resized_geometry"] = geometry(wid)
            np.save(out_dir / "resized.npy", screenshot(wid, shot))
            t0 = time.monotonic()
            key(wid, "q")
            result["exit_code"] = proc.wait(60)
            result["quit_seconds"] = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            result.setdefault("exit_code", "killed")
        log.close()
        (out_dir / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
