"""The HTML report in a real headless browser (Debian's chromium, installed here when missing): a real demo
stage is run, its report.html loads, every embedded image decodes in the browser and is not blank, and a
screenshot of the page is not empty. The page must be self-contained: nothing but data: URIs."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]

# Runs in the page after load: per image, whether it decoded and how much its pixels vary (a blank image
# has no variation), written into the DOM for --dump-dom to return.
CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const out = [];
  for (const img of document.images) {
    const r = {alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight, std: 0};
    if (img.naturalWidth > 0) {
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let n = 0, sum = 0, sum2 = 0;
      for (let i = 0; i < d.length; i += 4 * 7) { const y = 0.3 * d[i] + 0.59 * d[i + 1] + 0.11 * d[i + 2];
        n++; sum += y; sum2 += y * y; }
      r.std = Math.sqrt(Math.max(0, sum2 / n - (sum / n) ** 2));
    }
    out.push(r);
  }
  const pre = document.createElement('pre');
  pre.id = 'fovea-image-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.fixture(scope="module")
def chromium():
    """Debian's chromium package; installed with apt when missing (CI starts from a fresh machine)."""
    path = shutil.which("chromium")
    if path is None:
        install = ("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                   "--no-install-recommends chromium")
        run = subprocess.run(["flock", "/tmp/fovea-apt.lock", "bash", "-c", install], capture_output=True,
                             text=True, timeout=1200)
        path = shutil.which("chromium")
        assert path, f"could not install chromium: {run.stdout[-2000:]}{run.stderr[-2000:]}"
    return path


def browser(chromium, tmp_path, *args, timeout=180):
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    run = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                         text=True, timeout=timeout)
    return run


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    run = subprocess.run([sys.executable, "-m", "fovea_ros.cli", "demo", "--out", str(out), "--stages", "reference"],
                         cwd=REPO, capture_output=True, text=True, timeout=240, env=os.environ.copy())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return out / "report.html"


def test_report_page_is_self_contained_and_every_image_decodes_in_a_real_browser(report, chromium, tmp_path):
    page = report.read_text()
    sources = re.findall(r"<img[^>]*src='([^']*)'", page)
    assert len(sources) >= 3, "the reference stage draws the input scan, the filtered scan and its timing"
    assert all(s.startswith("data:image/png;base64,") for s in sources), "every image must be embedded"
    assert not re.search(r"(src|href)=['\"](https?:|file:|/)", page), "the page must load nothing from outside"
    assert "not drawn" not in page, "a picture of the reference stage could not be drawn"

    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    run = browser(chromium, tmp_path, "--virtual-time-budget=20000", "--dump-dom", checked.as_uri())
    found = re.search(r"<pre id=\"fovea-image-check\">(.*?)</pre>", run.stdout, re.S)
    assert found, f"the check script did not run: {run.stderr[-2000:]}"
    images = json.loads(found.group(1).replace("&quot;", '"'))
    assert len(images) == len(sources)
    for image in images:
        assert image["complete"] and image["width"] > 100 and image["height"] > 100, image
        assert image["std"] > 5.0, f"image '{image['alt']}' is blank: {image}"


def test_screenshot_of_the_report_is_not_empty(report, chromium, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    run = browser(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,1600",
                  "--virtual-time-budget=10000", report.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000, run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), float)
    assert pixels.shape == (1600, 1280)
    assert pixels.std() > 10, "the screenshot is blank"
    assert (pixels < 128).mean() > 0.01, "no text or pictures on the page"
