"""Headless Chromium (Debian's `chromium`) as a test sees a page: what loaded, what it measured, a screenshot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required"]
# Appended to a copy of the page: after load, it writes what the page shows into a <pre id=probe>.
PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const out = {
    images: [...document.images].map(i => ({src: i.getAttribute('src').slice(0, 40), width: i.naturalWidth})),
    audio: [...document.querySelectorAll('audio')].map(a => ({duration: a.duration, preload: a.preload})),
    external: [...document.querySelectorAll('[src],[href]')].map(e => e.getAttribute('src') || e.getAttribute('href'))
      .filter(u => /^(https?:)?\\/\\//.test(u)),
    text: document.body.innerText.slice(0, 4000),
  };
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 1500));
</script>"""


def probe(page: Path, budget_ms: int = 8000) -> dict:
    """Open a copy of ``page`` (beside it, so relative links resolve) and return what loaded: each image's
    natural width (0 = broken), each audio element's duration (NaN = not loaded), external URLs, the text."""
    copy = page.with_name(f".probe-{page.name}")
    html = page.read_text()
    copy.write_text(html.replace("</body>", PROBE + "</body>") if "</body>" in html else html + PROBE)
    try:
        proc = subprocess.run([CHROMIUM, *FLAGS, f"--virtual-time-budget={budget_ms}", "--dump-dom",
                               copy.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        copy.unlink(missing_ok=True)
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, flags=re.S)
    assert m, f"the page did not finish loading in Chromium: {proc.stderr[-1500:]}"
    import html as html_lib

    return json.loads(html_lib.unescape(m.group(1)))  # JSON.stringify wrote NaN durations as null


def screenshot(page: Path, dest: Path, size: str = "1280,900") -> Path:
    """A PNG of ``page`` as Chromium draws it."""
    subprocess.run([CHROMIUM, *FLAGS, f"--window-size={size}", "--virtual-time-budget=5000",
                    f"--screenshot={dest}", page.as_uri()], capture_output=True, timeout=120, check=True)
    return dest
