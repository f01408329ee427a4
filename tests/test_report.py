"""`fmbench report` and `fmbench leaderboard --format html`: pages that render in a real
headless browser (Chromium) with no console errors and figures that are not blank."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENTRY = ROOT / "leaderboard" / "unet-small__er__quick-v1.json"


def browser() -> str:
    """Chromium's executable; CI installs it (.ci/run) and sets FMBENCH_REQUIRE_BROWSER, so a
    missing browser fails there instead of skipping."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        if os.environ.get("FMBENCH_REQUIRE_BROWSER"):
            pytest.fail("no Chromium found, and FMBENCH_REQUIRE_BROWSER is set")
        pytest.skip("no Chromium here (apt-get install chromium)")
    return exe


def open_in_browser(page: Path, shot: Path | None = None) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and every console message it logged."""
    exe = browser()
    common = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
              "--v=0", "--window-size=1280,2400"]
    r = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln]
    if shot is not None:
        subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120, check=True)
    return r.stdout, console


def figures(text: str) -> dict[str, np.ndarray]:
    """The page's embedded PNGs by element id, as arrays."""
    from PIL import Image

    out = {}
    for m in re.finditer(r"<img id=['\"]?(\w+)['\"]?[^>]*src=['\"]data:image/png;base64,([^'\"]+)", text):
        out[m.group(1)] = np.asarray(Image.open(io.BytesIO(base64.b64decode(m.group(2)))).convert("L"), float)
    return out


def test_the_browser_check_catches_a_broken_page(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><body><script>undefinedFunction()</script></body>")
    dom, console = open_in_browser(bad)
    assert "data-rendered" not in dom and any("undefinedFunction" in c for c in console)


def test_report_and_leaderboard_page_render_in_a_browser(tmp_path, cli):
    r = cli("report", str(ENTRY), "--out", str(tmp_path / "report.html"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    page = tmp_path / "report.html"
    text = page.read_text()
    dom, console = open_in_browser(page, tmp_path / "report.png")
    assert console == [] and 'data-rendered="yes"' in dom
    assert "unet-small on er" in dom and "0.455 [0.397, 0.516]" in dom  # the entry's robust IoU with its interval
    assert "ifgsm@8/255: IoU 0.622 is above 0.530" in dom  # its self-check warning, explained below
    figs = figures(text)
    assert set(figs) == {"curves", "panel"}
    for name, img in figs.items():
        assert img.std() > 20, name  # not blank
    from PIL import Image

    assert np.asarray(Image.open(tmp_path / "report.png").convert("L"), float).std() > 10
    # nothing a user made is overwritten
    again = cli("report", str(ENTRY), "--out", str(page), cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr

    r = cli("leaderboard", "--dataset", "er", "--tier", "quick-v1", "--format", "html", "--out", str(tmp_path / "site"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    index = tmp_path / "site" / "index.html"
    dom, console = open_in_browser(index)
    assert console == [] and 'data-rendered="yes"' in dom
    links = re.findall(r"href=\"(reports/[^\"]+)\"", dom)
    assert len(links) == 11 and all((tmp_path / "site" / h).exists() for h in links)
    assert "baseline: otsu" in dom and "undertrained" in dom
    # a folder with someone else's index.html is not written into
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "index.html").write_text("<html>my page</html>")
    r = cli("leaderboard", "--dataset", "er", "--tier", "quick-v1", "--format", "html", "--out", str(tmp_path / "mine"), cwd=tmp_path)
    assert r.returncode == 1 and "was not written by fmbench" in r.stderr
    assert (tmp_path / "mine" / "index.html").read_text() == "<html>my page</html>"


def test_sorting_the_leaderboard_page_by_a_column(tmp_path, cli):
    """Clicking a column head sorts the rows (run in the browser: the DOM after a scripted click)."""
    r = cli("leaderboard", "--dataset", "er", "--tier", "quick-v1", "--format", "html", "--out", str(tmp_path / "site"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    index = tmp_path / "site" / "index.html"
    text = index.read_text().replace("</body>", "<script>document.querySelectorAll('table.board th')[4].click();"
                                                "document.querySelectorAll('table.board th')[4].click()</script></body>")
    clicked = tmp_path / "site" / "clicked.html"
    clicked.write_text(text)
    dom, console = open_in_browser(clicked)
    assert console == []
    table = dom.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    clean = [float(v) for v in re.findall(r"<tr><td data-v=\"\d+\">\d+</td><td>.*?</td>(?:<td data-v=\"[^\"]*\">.*?</td>){2}"
                                          r"<td data-v=\"([0-9.]+)\"", table)]
    assert len(clean) == 11 and clean == sorted(clean, reverse=True)  # clean IoU, descending after two clicks


def test_report_imports_no_code_a_file_names_unless_trusted(tmp_path, cli):
    """An edited result or entry naming its model by code (``os:system`` with a command as its
    argument) must not run it: the page is written without example images and says how to trust."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "leaderboard"
    e = json.loads((root / "unet-small__nucleus__quick-v1.json").read_text())
    pwned = tmp_path / "PWNED"
    e["model"]["ref"] = "os:system"
    e["model"]["args"] = {"command": f"touch {pwned}"}
    (tmp_path / "evil.json").write_text(json.dumps(e))
    r = cli("report", str(tmp_path / "evil.json"), "--out", str(tmp_path / "r.html"), "--dir", str(root))
    assert r.returncode == 0, r.stderr
    assert not pwned.exists()
    assert "--trust os:system" in r.stdout and (tmp_path / "r.html").exists()


def test_a_report_on_few_images_says_so_as_the_terminal_does():
    """The terminal's 'few images' line was missing from the page, which said 'nothing says these
    numbers should not be read at face value' for a three-image run."""
    import json

    from fmbench.report import report_html

    e = json.loads(ENTRY.read_text())
    assert "few images" not in report_html(e, [])
    e["dataset"]["n_images"] = 3
    page = report_html(e, [])
    assert "few images</span>: 3 test images" in page and "nothing says these numbers" not in page


def test_the_reports_clean_iou_names_the_runs_reference_snr():
    import json

    from fmbench.report import report_html

    e = json.loads(ENTRY.read_text())
    e["protocol"]["content"] = {"reference_snr": 4.0}  # as a result of `eval --reference-snr 4` carries it
    assert "IoU at the reference condition (SNR 4)" in report_html(e, [])
