"""Make docs/figures/report.png: a real `camscope explain` run's report, rendered by headless
Chromium (run: .venv/bin/python docs/make_report_example.py; needs the reproduction's CNN-2 from
`camscope reproduce respond-cam` and Debian's chromium).

Two simulated subtomograms (SNR ∞) as MRC files, CNN-2 at maxpool2, Respond-CAM, Grad-CAM and
Integrated Gradients for the true class; the screenshot shows the top of report.html.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = ROOT / "runs" / "respond-cam" / "models" / "cnn2_snr-inf.json"
CAMSCOPE = [sys.executable, "-m", "camscope.cli.main"]


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        subprocess.run(
            [
                *CAMSCOPE,
                "simulate",
                "--out",
                str(folder / "data"),
                "--per-class",
                "1",
                "--classes",
                "2",
                "--snr",
                "inf",
                "--quiet",
            ],
            check=True,
        )
        inputs = sorted((folder / "data").rglob("*.mrc"))[:2]
        subprocess.run(
            [
                *CAMSCOPE,
                "explain",
                str(MODEL),
                *map(str, inputs),
                "--out",
                str(folder / "out"),
                "--method",
                "respond-cam,grad-cam,integrated-gradients",
                "--option",
                "steps=32",
                "--format",
                "png",
                "--quiet",
            ],
            check=True,
        )
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={folder / 'profile'}",
                "--hide-scrollbars",
                "--window-size=1100,1250",
                f"--screenshot={HERE / 'figures' / 'report.png'}",
                (folder / "out" / "report.html").as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    print(f"wrote {HERE / 'figures' / 'report.png'}")


if __name__ == "__main__":
    main()
