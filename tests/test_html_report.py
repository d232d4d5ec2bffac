"""`python -m analysis.report RUNS --html report.html`: one self-contained file with the table, the
configuration differences, the figures and the languages, checked as text and rendered by a real
browser (headless Chromium from Debian's packages; skipped where /usr/bin/chromium is absent)."""

import base64
import html
import json
import pathlib
import re
import subprocess

import pytest

from analysis import report
from analysis.html_report import markdown_table_html

CHROMIUM = pathlib.Path("/usr/bin/chromium")
OBJECTS = [[a, b] for a in range(4) for b in range(2)]
PNG = b"\x89PNG\r\n\x1a\n"


def write_run(path, strategy, seed, game="referential", shift=0.0, languages=True):
    """A two-generation run with evaluations every 10 iterations and its languages."""
    path.mkdir(parents=True)
    config = {"game": game, "strategy": strategy, "seed": seed, "generations": 2, "iterations_per_generation": 30,
              "n_values": [4, 2], "vocab_size": 6, "receiver_training": "cross_entropy",
              "receiver_head": False}
    (path / "config.json").write_text(json.dumps(config))
    forgets = strategy != "no_reset"
    records = [{"generation": 0, "iteration": 30, "strategy": strategy, "seed": seed, "accuracy": 0.7,
                "topsim": 0.4 + shift, "receiver_forgotten_fraction": 0.9 if forgets else 0.0,
                "topsim_after_forgetting": 0.1 + shift, "accuracy_after_forgetting": 0.3},
               {"generation": 1, "iteration": 60, "strategy": strategy, "seed": seed, "accuracy": 0.9,
                "topsim": 0.6 + shift, "topsim_after_forgetting": None, "accuracy_after_forgetting": None}]
    (path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    evaluations = [{"generation": i // 3, "iteration": 10 * (i + 1), "accuracy": 0.3 + 0.1 * i,
                    "topsim": 0.1 + 0.08 * i + shift} for i in range(6)]
    (path / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evaluations))
    good = [[a, b + 4] for a, b in OBJECTS]
    tables = [{"generation": g, "when": when, "n_values": [4, 2], "vocab_size": 6, "eos": False, "objects": OBJECTS,
               "messages": good if g or when == "before_forgetting" else good[::-1]}
              for g, when in ((0, "before_forgetting"), (0, "after_forgetting"), (1, "before_forgetting"))]
    if languages:
        (path / "languages.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tables))
    else:
        (path / "language.json").write_text(json.dumps(tables[-1]))
    return path


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    write_run(root / "pbf" / "seed0", "pbf", 0)
    write_run(root / "pbf" / "seed1", "pbf", 1, shift=0.1)
    write_run(root / "no_reset" / "seed0", "no_reset", 0, languages=False)
    write_run(root / "rec" / "seed0", "pbf", 0, game="reconstruction")
    return root


def images(page):
    """The decoded PNG of every <img> (each must be a data URI: the file stands alone)."""
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in sources), [s[:40] for s in sources]
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def test_html_report_holds_table_differences_figures_and_languages(sweep, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert report.main([str(sweep), "--html", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "| strategy | seeds | final accuracy | final topsim |"  # stdout: the table
    assert captured.err.strip() == f"wrote {out}"
    page = out.read_text()
    pngs = images(page)
    # curves across generations, inside generations, and one language figure per experiment (3)
    assert len(pngs) == 5 and all(p.startswith(PNG) and len(p) > 5000 for p in pngs)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "<td>pbf (game=referential)</td><td class=\"num\">2</td>" in page
    assert "The runs differ in <b>game, strategy</b>" in page
    assert "<td>pbf (game=reconstruction)</td><td class=\"num\">1</td><td class=\"num\">0</td><td>reconstruction</td><td>pbf</td>" in page
    assert page.count("<h3>") == 3 and "(seed 0, languages.jsonl)" in page and "(seed 0, language.json)" in page
    assert "<td>pbf (game=referential)</td><td class=\"num\">2</td><td class=\"num\">0.900 ± 0.000</td>" in page
    assert not list(out.parent.glob(".*.tmp"))  # written in one rename


def test_html_flag_is_checked_before_any_work(sweep, tmp_path, capsys):
    missing = tmp_path / "nowhere" / "r.html"
    assert report.main([str(sweep), "--html", str(missing)]) == 2
    assert "--html" in capsys.readouterr().err and not missing.parent.exists()
    assert report.main([str(sweep), "--html", str(tmp_path)]) == 2


def test_markdown_tables_become_escaped_html():
    text = '| strategy | seeds |\n|---|---|\n| pbf (note="a\\|<b>") | 2 |\n'
    assert markdown_table_html(text) == ('<table><tr><th>strategy</th><th>seeds</th></tr>\n'
                                         '<tr><td>pbf (note=&quot;a|&lt;b&gt;&quot;)</td><td class="num">2</td></tr>\n'
                                         "</table>")


# -- a real browser ------------------------------------------------------------------------------------
IMAGE_CHECK = ("<script>window.addEventListener('load', function () { var out = [];"
               " for (var i = 0; i < document.images.length; i++) { var im = document.images[i];"
               " out.push([im.complete, im.naturalWidth, im.naturalHeight]); }"
               " var d = document.createElement('pre'); d.id = 'image-check'; d.textContent = JSON.stringify(out);"
               " document.body.appendChild(d); });</script>")
BROKEN = '<img src="data:image/png;base64,iVBORw0KGgoAAAAN" alt="broken">'


def chromium(tmp_path, url, *args):
    """Run headless Chromium once with a fresh profile; its stdout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    profile.mkdir()
    done = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={profile}", *args, url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def loaded_images(tmp_path, page, name):
    """[complete, naturalWidth, naturalHeight] of every image, as Chromium saw them after load."""
    checked = tmp_path / name
    checked.write_text(page.replace("</body>", IMAGE_CHECK + "</body>"))
    dom = chromium(tmp_path, checked.as_uri(), "--virtual-time-budget=10000", "--dump-dom")
    found = re.search(r'<pre id="image-check">(.*?)</pre>', dom)
    assert found, dom[-500:]
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium "
                                                   "(Debian: apt-get install chromium)")
def test_report_renders_in_chromium_with_every_image_loaded(sweep, tmp_path):
    from matplotlib.image import imread

    out = tmp_path / "report.html"
    assert report.main([str(sweep), "--html", str(out)]) == 0
    page = out.read_text()
    seen = loaded_images(tmp_path, page, "checked.html")
    assert len(seen) == 5
    for complete, width, height in seen:
        assert complete and width > 300 and height > 200
    # the check itself can fail: a broken image is reported with width 0
    broken = loaded_images(tmp_path, page.replace("<h2>Summary</h2>", BROKEN + "<h2>Summary</h2>"), "broken.html")
    assert sorted(w for _, w, _ in broken)[0] == 0 and len(broken) == 6
    shot = tmp_path / "shot.png"
    chromium(tmp_path, out.as_uri(), f"--screenshot={shot}", "--window-size=1200,2000")
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1200)
    ink = (pixels.mean(axis=2) < 0.9).mean()  # share of pixels that are not (near) white
    assert ink > 0.03 and pixels.std() > 0.05, (ink, pixels.std())
