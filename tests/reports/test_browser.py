"""The report as a reader meets it: a real browser (headless Chromium) opens index.html of a real
study run on two data sets, and every image must load and every section must render.

How: a copy of index.html beside it gets a script that, on the page's load event (after every
image has loaded or failed), writes what it finds into a <pre> element as JSON; ``chromium
--headless --dump-dom`` prints the DOM after load, and the test reads the JSON back. No driver,
no download at run time: only Debian's ``chromium`` (installed by .ci/run). Skipped where it is
missing, except under CI (env CI set), which must run it.
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import reports
from harness import runner, studies
from harness.studies import DataSource

pytestmark = pytest.mark.integration  # headless Chromium

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHECK = """
<script>
window.addEventListener('load', function () {
  var images = Array.from(document.images).map(function (img) {
    return {src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth};
  });
  var sections = Array.from(document.querySelectorAll('section.study')).map(function (s) {
    var box = s.getBoundingClientRect();
    return {id: s.id, height: box.height, width: box.width, heading: (s.querySelector('h2') || {}).textContent || '',
            tables: s.querySelectorAll('table').length, datasets: s.querySelectorAll('section.dataset').length,
            ranks: s.querySelectorAll('section.ranks').length,
            smoke: !!s.querySelector('div.banner.smoke'), text: s.innerText.length};
  });
  var toc = Array.from(document.querySelectorAll('ul.toc a')).map(function (a) {
    var target = document.getElementById(a.getAttribute('href').slice(1));
    return {href: a.getAttribute('href'), found: !!target};
  });
  var pre = document.createElement('pre');
  pre.id = 'report-check';
  pre.textContent = JSON.stringify({images: images, sections: sections, toc: toc});
  document.body.appendChild(pre);
});
</script>
"""


def chromium() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("CI must run the browser test: no chromium found (.ci/run installs Debian's chromium)")
    pytest.skip("no chromium on this machine (apt-get install chromium)")


def rendered(browser: str, page: Path) -> dict:
    """What the check script found in ``page`` (index.html), as rendered by headless Chromium."""
    probe = page.with_name("_browser_check.html")
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    try:
        with tempfile.TemporaryDirectory() as profile:
            done = subprocess.run(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    f"--user-data-dir={profile}",
                    "--window-size=1400,2000",
                    "--virtual-time-budget=30000",
                    "--dump-dom",
                    probe.as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=180,
            )
    finally:
        probe.unlink()
    found = re.search(r'<pre id="report-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the check script did not run (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A real quick study, run by the runner on two data sets (tiny synthetic data from two generator
    seeds, short sequences to keep it quick), reported."""
    root = tmp_path_factory.mktemp("browser")
    uri = f"sqlite:///{root}/mlflow.db"
    study = studies.load("no_shuffle").with_options(quick=True, seeds=2)
    study = dataclasses.replace(
        study,
        datasets=(
            DataSource("synthetic", options={"size": "tiny", "seq_len": 12}),
            DataSource("synthetic", options={"size": "tiny", "seq_len": 12, "seed": 1}, label="synthetic_b"),
        ),
    )
    options = runner.RunOptions(
        storage=str(root / "optuna.journal"), tracking_uri=uri, progress=False, checkpoint_dir=str(root / "checkpoints")
    )
    assert runner.run(study, options).ok
    summary = reports.generate(None, tracking_uri=uri, storage=str(root / "optuna.journal"), out_dir=root / "build")
    return {"out": root / "build", "summary": summary}


def test_every_image_loads_and_every_section_renders(report):
    browser = chromium()
    found = rendered(browser, report["out"] / "index.html")
    pngs = {p.relative_to(report["out"]).as_posix() for p in report["out"].rglob("*.png")}
    shown = {image["src"] for image in found["images"]}
    assert pngs and shown == pngs  # every figure written is on the page, and only those
    broken = [image["src"] for image in found["images"] if not (image["complete"] and image["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"

    assert [s["heading"].split(" ")[0] for s in found["sections"]] == list(report["summary"])
    for section in found["sections"]:
        assert section["height"] > 100 and section["width"] > 100 and section["text"] > 200, section
    study = found["sections"][0]
    assert study["smoke"]  # a quick study is a smoke test
    assert study["datasets"] == 2 and study["ranks"] == 1
    assert study["tables"] >= 2 * 3 + 2  # per data set configuration, results, significance; ranks tables
    assert found["toc"] and all(link["found"] for link in found["toc"])


def test_the_check_sees_a_broken_image(tmp_path):
    """The check itself: an image that cannot load is reported with naturalWidth 0."""
    browser = chromium()
    shutil.copy(Path(__file__).resolve().parents[2] / "reports" / "__init__.py", tmp_path / "not_an_image.png")
    page = tmp_path / "index.html"
    page.write_text(
        "<!DOCTYPE html><html><body><section class='study'><h2>x</h2>"
        "<img src='missing.png'><img src='not_an_image.png'></section></body></html>"
    )
    found = rendered(browser, page)
    assert [image["width"] for image in found["images"]] == [0, 0]
