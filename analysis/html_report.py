"""One self-contained HTML file for a run, a set of runs or a sweep (`python -m analysis.report
RUNS --html report.html`): what the runs' configurations differ in, the summary table, the curves
across generations, the curves inside generations with every forgetting event, and the language
figures. Figures are PNGs embedded as base64 data URIs, so the file can be mailed or archived alone;
it holds no script and loads nothing from the network.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import pathlib
import re
import secrets
from collections import defaultdict
from typing import Any, Sequence

from .dynamics import dynamics_figure
from .figures import png_bytes
from .language_figure import load_languages, language_figure
from .plot import curves_figure
from .runs import (EVALUATIONS_FILE, PER_RUN_FIELDS, differing_fields, experiment_fields, numeric_keys, run_groups, run_seed,
                   strategy_of)

MAX_LANGUAGE_RUNS = 8  # language figures: the first seed of each experiment, at most this many

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1180px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.8em; }
h3 { font-size: 1.0em; margin-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #eee; display: block; margin: 6px 0 4px; }
.note { color: #555; font-size: 0.88em; } code { background: #f5f5f5; padding: 0 3px; }
details { margin: 8px 0; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure(fig: Any, alt: str) -> str:
    return f'<img src="{_data_uri(png_bytes(fig))}" alt="{html.escape(alt)}">'


def _split_row(line: str) -> list[str]:
    """The cells of one markdown table row ('\\|' inside a cell is a literal pipe)."""
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [cell.strip().replace("\\|", "|") for cell in cells]


def markdown_table_html(text: str) -> str:
    """A markdown table (as report and compare print them) as an HTML table, every cell escaped."""
    lines = [line for line in text.splitlines() if line.strip()]
    head, body = _split_row(lines[0]), [_split_row(line) for line in lines[2:]]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"]
    for row in body:
        out.append("<tr>" + "".join(f'<td{_num(c)}>{html.escape(c)}</td>' for c in row) + "</tr>")
    return "\n".join(out + ["</table>"])


def _num(cell: str) -> str:
    return ' class="num"' if re.fullmatch(r"[-+]?[\d.]+( ± [\d.]+)?|-", cell) else ""


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td{_num(str(c))}>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    return "\n".join(out + ["</table>"])


def _short(path: pathlib.Path, root: pathlib.Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def config_section(runs: list[dict[str, Any]], root: pathlib.Path) -> str:
    """What tells the experiments apart (one row per experiment: its seeds and the value of every
    field that differs between runs), and, folded, the settings all runs share."""
    groups = run_groups(runs)
    differing = differing_fields(runs)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, group in enumerate(groups):
        by_label[group.label].append(i)
    rows = []
    for label in sorted(by_label):
        first = runs[by_label[label][0]]
        fields = {"strategy": strategy_of(first), **experiment_fields(first["config"])}
        seeds = ", ".join(str(run_seed(runs[i])) for i in by_label[label])
        rows.append([label, len(by_label[label]), seeds] + [fields.get(k, "(unset)") for k in differing])
    parts = ["<h2>Configurations</h2>"]
    if differing:
        parts.append(f"<p>The runs differ in <b>{html.escape(', '.join(differing))}</b>; runs pool as seeds only "
                     "when every other experiment field agrees.</p>")
    else:
        parts.append("<p>All runs share one configuration (they differ only in per-run fields such as the seed).</p>")
    parts.append(_table(["experiment", "runs", "seeds", *differing], rows))
    shared = {k: v for k, v in {"strategy": strategy_of(runs[0]), **experiment_fields(runs[0]["config"])}.items()
              if k not in differing}
    parts.append(f"<details><summary>settings all {len(runs)} runs share ({len(shared)})</summary>"
                 + _table(["field", "value"], sorted(shared.items())) + "</details>")
    parts.append('<p class="note">Not compared (per-run by nature): ' + html.escape(", ".join(sorted(PER_RUN_FIELDS)))
                 + ".</p>")
    per_run = [[_short(run["path"], root), group.label, run_seed(run), len(run["records"])]
               for run, group in zip(runs, groups)]
    parts.append(f"<details><summary>the {len(runs)} runs</summary>"
                 + _table(["run", "experiment", "seed", "generations recorded"], per_run) + "</details>")
    return "\n".join(parts)


def _finite_metrics(runs: list[dict[str, Any]], metrics: Sequence[str]) -> list[str]:
    recorded = set(numeric_keys(runs))
    return [m for m in metrics if m in recorded]


def figures_section(runs: list[dict[str, Any]], metrics: Sequence[str], confidence: float,
                    until: float | None = None) -> str:
    """Curves across generations and, for runs that record iterations, inside generations."""
    drawn = _finite_metrics(runs, metrics)
    parts = ["<h2>Across generations</h2>"]
    if not drawn:
        return parts[0] + f'<p class="note">None of {", ".join(metrics)} is recorded as a number.</p>'
    parts.append(_figure(curves_figure(runs, drawn, confidence=confidence), "metrics against generation"))
    parts.append('<p class="note">Each curve is one experiment; bands are the confidence interval over its seeds, '
                 "clipped to the range the metric can take.</p>")
    if any("iteration" in r for run in runs for r in run["records"]):
        parts.append("<h2>Inside generations</h2>")
        with_evaluations = sum((run["path"] / EVALUATIONS_FILE).is_file() for run in runs)
        parts.append(_figure(dynamics_figure(runs, drawn, confidence=confidence, until=until), "metrics against iteration"))
        parts.append(f'<p class="note">From evaluations.jsonl ({with_evaluations} of {len(runs)} runs have one; '
                     "the others are drawn from their generation ends). Dashed lines: forgetting events; "
                     "triangles: the value right after forgetting (e.g. topsim_after_forgetting).</p>")
    return "\n".join(parts)


def language_section(runs: list[dict[str, Any]], root: pathlib.Path, max_runs: int = MAX_LANGUAGE_RUNS) -> str:
    """The language figure of the first seed of each experiment (at most `max_runs`)."""
    chosen, seen = [], set()
    for run, group in sorted(zip(runs, run_groups(runs)), key=lambda pair: (pair[1].label, str(run_seed(pair[0])))):
        if group.label not in seen and len(chosen) < max_runs:
            tables = load_languages(run["path"])
            if tables:
                seen.add(group.label)
                chosen.append((run, group.label, tables))
    parts = ["<h2>Languages</h2>"]
    if not chosen:
        return parts[0] + '<p class="note">No run wrote language.json or languages.jsonl.</p>'
    parts.append(f'<p class="note">The first seed of each experiment ({len(chosen)} shown). A run that records '
                 "every generation (languages.jsonl) shows them, before and after forgetting; otherwise the final "
                 "speaker's language.json alone.</p>")
    for run, label, tables in chosen:
        source = "languages.jsonl" if (run["path"] / "languages.jsonl").is_file() else "language.json"
        parts.append(f"<h3>{html.escape(label)}: {html.escape(_short(run['path'], root))} "
                     f"(seed {html.escape(str(run_seed(run)))}, {source})</h3>")
        parts.append(_figure(language_figure(tables), f"language of {label}"))
    return "\n".join(parts)


def render(runs: list[dict[str, Any]], paths: Sequence[str], table_markdown: str, metrics: Sequence[str], *,
           confidence: float = 0.95, until: float | None = None) -> str:
    """The whole HTML page as text (`until`: the iteration the runs were truncated at, if any)."""
    root = pathlib.Path(os.path.commonpath([str(run["path"].resolve()) for run in runs]))
    runs = [{**run, "path": run["path"].resolve()} for run in runs]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = [
        "<h1>emergent-frl report</h1>",
        f'<p class="note">{len(runs)} runs under <code>{html.escape(" ".join(paths))}</code> '
        f"(paths below are relative to <code>{html.escape(str(root))}</code>), written {stamp}.</p>",
        config_section(runs, root),
        "<h2>Summary</h2>",
        markdown_table_html(table_markdown),
        f'<p class="note">Mean ± {int(round(confidence * 100))} % confidence interval (Student t) over seeds.</p>',
        figures_section(runs, metrics, confidence, until),
        language_section(runs, root),
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>emergent-frl report: {html.escape(' '.join(paths))}</title><style>{STYLE}</style></head>\n"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")


def html_target(out: str | os.PathLike, flag: str = "--html") -> pathlib.Path:
    """The file the report goes to, checked before any work: a file name in an existing folder."""
    text = os.fspath(out)
    path = pathlib.Path(text)
    if not text.strip() or path.is_dir() or text.endswith(("/", os.sep)):
        raise ValueError(f"{flag} {text!r}: give a file name such as report.html")
    if not path.parent.is_dir():
        raise ValueError(f"{flag} {text}: folder {path.parent} does not exist (create it first)")
    return path


def write_html(text: str, out: str | os.PathLike) -> pathlib.Path:
    """Write through a temporary file and one rename: a failed write leaves an older report whole."""
    target = html_target(out)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), str(target)) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
