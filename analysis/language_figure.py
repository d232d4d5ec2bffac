"""The language itself, generation by generation: which message the speaker gives each object.

Input: object -> message tables as a run writes them (language.json holds the final one; a run that
records every generation writes languages.jsonl, one table per line):

    {"generation": 3, "when": "before_forgetting", "n_values": [8, 4], "vocab_size": 8, "eos": false,
     "objects": [[0, 0], [0, 1], ...], "messages": [[5, 2], [5, 7], ...]}

"when" is "before_forgetting" (the language at the end of the generation, before its boundary) or
"after_forgetting" (right after it); absent or null means the end of the generation. "generation",
"n_values" and "vocab_size" may be left out (then the table's position, and the largest value +1).

Two-attribute spaces (the paper's 8 colors x 4 shapes) are drawn as the object grid (attribute 0 x
attribute 1, each cell the object's message; one colour per distinct message, so two objects that
share a colour share a message), one grid per generation shown, and a strip across all generations
(one row per table, one column per object, shaded where the message changed since the row above).
Larger spaces are drawn as a heatmap per generation: for each symbol at each message position, the
share of the objects it is sent for that have each attribute value (a compositional language has one
attribute value near 1 per row; a holistic one spreads every row).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from matplotlib.figure import Figure

from .runs import describe, json_type, read_object, read_records

LANGUAGES_FILE = "languages.jsonl"
LANGUAGE_FILE = "language.json"
WHEN = ("before_forgetting", "after_forgetting")
KINDS = ("auto", "grid", "heatmap")
STRIP_MAX_OBJECTS = 64  # messages written in the strip's cells up to this many objects


@dataclass
class Language:
    """One checked object -> message table."""

    generation: int
    when: str
    n_values: list[int]
    vocab_size: int
    eos: bool
    objects: np.ndarray  # (objects, attributes) ints
    messages: np.ndarray  # (objects, positions) ints

    @property
    def title(self) -> str:
        return f"generation {self.generation}" + (", after forgetting" if self.when == "after_forgetting" else "")

    def text(self, index: int) -> str:
        """Object `index`'s message as a cell shows it: symbols run together (dot-separated when the
        vocabulary has more than 10); with EOS, cut at the first 0, shown as '.'."""
        symbols = [int(s) for s in self.messages[index]]
        end = ""
        if self.eos and 0 in symbols:
            symbols, end = symbols[: symbols.index(0)], "."
        sep = "" if self.vocab_size <= 10 else "·"
        return sep.join(map(str, symbols)) + end or "."


def _int_matrix(value: Any, key: str, where: str) -> np.ndarray:
    """A list of equal-length lists of non-negative integers as an int array, or a ValueError."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: '{key}' is {describe(value)}, not a non-empty list of lists")
    width = None
    for i, row in enumerate(value):
        if not isinstance(row, list) or not row or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                             for v in row):
            raise ValueError(f"{where}: '{key}'[{i}] is {describe(row)}, not a list of integers >= 0")
        if width is not None and len(row) != width:
            raise ValueError(f"{where}: '{key}'[{i}] has {len(row)} entries, the first has {width}")
        width = len(row)
    return np.array(value, dtype=np.int64)


def _positive_ints(value: Any, key: str, where: str, count: int | None = None) -> Any:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in items):
        raise ValueError(f"{where}: '{key}' is {describe(value)}, not {'a list of integers' if count else 'an integer'} >= 1")
    if count is not None and len(items) != count:
        raise ValueError(f"{where}: '{key}' has {len(items)} entries but objects have {count} attributes")
    return value


def check_language(table: Any, where: str, index: int = 0) -> Language:
    """A Language from one table, every field checked; a ValueError names `where` and the field."""
    if not isinstance(table, dict):
        raise ValueError(f"{where}: holds {json_type(table)}, not a JSON object")
    for key in ("objects", "messages"):
        if key not in table:
            raise ValueError(f"{where}: '{key}' is missing (a language table needs objects and messages)")
    objects = _int_matrix(table["objects"], "objects", where)
    messages = _int_matrix(table["messages"], "messages", where)
    if len(objects) != len(messages):
        raise ValueError(f"{where}: {len(objects)} objects but {len(messages)} messages")
    n_values = table.get("n_values")
    if n_values is None:
        n_values = [int(v) + 1 for v in objects.max(axis=0)]
    _positive_ints(n_values, "n_values", where, objects.shape[1])
    too_big = objects >= np.array(n_values)
    if too_big.any():
        row, column = np.argwhere(too_big)[0]
        raise ValueError(f"{where}: 'objects'[{row}] has value {objects[row, column]} for attribute {column}, "
                         f"allowed range 0..{n_values[column] - 1} (n_values)")
    vocab_size = table.get("vocab_size")
    if vocab_size is None:
        vocab_size = int(messages.max()) + 1
    _positive_ints(vocab_size, "vocab_size", where)
    if messages.max() >= vocab_size:
        raise ValueError(f"{where}: 'messages' holds symbol {int(messages.max())}, allowed range 0..{vocab_size - 1} "
                         "(vocab_size)")
    when = table.get("when") or "before_forgetting"
    if when not in WHEN:
        raise ValueError(f"{where}: 'when' is {describe(when)}; allowed: {', '.join(WHEN)} (or absent)")
    generation = table.get("generation", index)
    if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
        raise ValueError(f"{where}: 'generation' is {describe(generation)}, not an integer >= 0")
    eos = table.get("eos", False)
    if not isinstance(eos, bool):
        raise ValueError(f"{where}: 'eos' is {describe(eos)}, not true or false")
    return Language(generation, when, list(n_values), int(vocab_size), eos, objects, messages)


def check_languages(tables: Iterable[Any]) -> list[Language]:
    """Tables (dicts as in the module doc, or Languages) checked and put in time order."""
    out = [t if isinstance(t, Language) else check_language(t, f"language table {i + 1}", i)
           for i, t in enumerate(tables)]
    return sorted(out, key=lambda t: (t.generation, WHEN.index(t.when)))


def load_languages(run_dir: str | pathlib.Path) -> list[Language]:
    """The tables a run recorded: languages.jsonl when present (each line named in errors), else
    language.json alone, else []."""
    run_dir = pathlib.Path(run_dir)
    many = run_dir / LANGUAGES_FILE
    if many.is_file():
        return check_languages([check_language(record, f"{many}: line {line}", i)
                                for i, (line, record) in enumerate(read_records(many))])
    one = run_dir / LANGUAGE_FILE
    return [check_language(read_object(one), str(one))] if one.is_file() else []


def select_generations(tables: list[Language], max_generations: int) -> list[Language]:
    """The tables of at most `max_generations` generations, evenly spread, first and last kept."""
    if max_generations < 1:
        raise ValueError(f"max_generations {max_generations}: allowed range is >= 1")
    generations = sorted({t.generation for t in tables})
    if len(generations) > max_generations:
        picks = np.unique(np.round(np.linspace(0, len(generations) - 1, max_generations)).astype(int))
        generations = [generations[i] for i in picks]
    keep = set(generations)
    return [t for t in tables if t.generation in keep]


def symbol_attribute_matrix(language: Language) -> tuple[np.ndarray, list[str], list[str]]:
    """(matrix, row labels, column labels): rows are the (position, symbol) pairs the language uses,
    columns the (attribute, value) pairs; each entry is the share of the objects sent that symbol at
    that position whose attribute has that value (each row sums to 1 within every attribute)."""
    rows, labels = [], []
    columns = [f"a{a}={v}" for a, n in enumerate(language.n_values) for v in range(n)]
    for position in range(language.messages.shape[1]):
        for symbol in range(language.vocab_size):
            sent = language.messages[:, position] == symbol
            if not sent.any():
                continue
            shares = [np.bincount(language.objects[sent, a], minlength=n) / sent.sum()
                      for a, n in enumerate(language.n_values)]
            rows.append(np.concatenate(shares))
            labels.append(f"pos {position}: {symbol}")
    return np.array(rows), labels, columns


def message_ids(tables: list[Language]) -> dict[tuple[int, ...], int]:
    """A number per distinct message over all `tables`, so one message has one colour in every panel."""
    distinct = sorted({tuple(m) for t in tables for m in t.messages.tolist()})
    return {message: i for i, message in enumerate(distinct)}


def message_colors(language: Language, ids: dict[tuple[int, ...], int] | None = None) -> np.ndarray:
    """An RGBA colour per object, one per distinct message (light, so the text stays readable)."""
    from matplotlib import colormaps

    ids = ids or message_ids([language])
    palette = np.concatenate([colormaps["tab20"](np.arange(20)), colormaps["tab20b"](np.arange(20))])
    colors = palette[[ids[tuple(m)] % len(palette) for m in language.messages.tolist()]].copy()
    colors[:, :3] = 0.45 * colors[:, :3] + 0.55  # blend with white
    return colors


def draw_grid(ax: Any, language: Language, ids: dict[tuple[int, ...], int] | None = None) -> None:
    """Attribute 0 down, attribute 1 across, each cell the object's message (colours by `ids`)."""
    rows, cols = language.n_values
    image = np.ones((rows, cols, 4))
    colors = message_colors(language, ids)
    for index, (a, b) in enumerate(language.objects):
        image[a, b] = colors[index]
        ax.text(b, a, language.text(index), ha="center", va="center", fontsize=7 if cols <= 8 else 5)
    ax.imshow(image, aspect="auto", interpolation="nearest")
    distinct = len(np.unique(language.messages, axis=0))
    ax.set_title(f"{language.title}\n{distinct} distinct messages / {len(language.messages)} objects", fontsize=8)
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.tick_params(labelsize=7)
    ax.set_xlabel("attribute 1", fontsize=8)
    ax.set_ylabel("attribute 0", fontsize=8)


def draw_strip(ax: Any, tables: list[Language]) -> None:
    """One row per table in time order, one column per object: shaded where the object's message
    differs from the row above; messages written in the cells for small spaces."""
    keys = [tuple(map(int, o)) for o in tables[0].objects]
    rows = []
    for table in tables:
        if [tuple(map(int, o)) for o in table.objects] != keys:
            raise ValueError(f"language tables: {table.title} lists other objects than {tables[0].title}")
        rows.append([tuple(m) for m in table.messages.tolist()])
    changed = np.zeros((len(tables), len(keys)))
    for r in range(1, len(rows)):
        changed[r] = [rows[r][i] != rows[r - 1][i] for i in range(len(keys))]
    ax.imshow(changed, cmap="Oranges", vmin=0, vmax=2.5, aspect="auto", interpolation="nearest")
    if len(keys) <= STRIP_MAX_OBJECTS:
        for r, table in enumerate(tables):
            for i in range(len(keys)):
                ax.text(i, r, table.text(i), ha="center", va="center", fontsize=5.5)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([",".join(map(str, k)) for k in keys], rotation=90, fontsize=6)
    else:
        ax.set_xlabel(f"{len(keys)} objects", fontsize=8)
    ax.set_yticks(range(len(tables)))
    ax.set_yticklabels([f"{t.title} ({int(c.sum())} changed)" if r else t.title
                        for r, (t, c) in enumerate(zip(tables, changed))], fontsize=6)
    ax.set_title("across generations: messages per object (shaded: changed since the row above)", fontsize=8)


def draw_heatmap(ax: Any, language: Language) -> Any:
    matrix, row_labels, column_labels = symbol_attribute_matrix(language)
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=max(4, min(7, 300 // max(len(row_labels), 1))))
    ax.set_xticks(range(len(column_labels)))
    ax.set_xticklabels(column_labels, rotation=90, fontsize=max(4, min(7, 300 // max(len(column_labels), 1))))
    start = 0
    for n in language.n_values[:-1]:  # attribute blocks
        start += n
        ax.axvline(start - 0.5, color="white", linewidth=1)
    ax.set_title(language.title, fontsize=8)
    return image


def language_figure(tables: Iterable[Any], *, kind: str = "auto", max_generations: int = 6,
                    title: str | None = None) -> Any:
    """The language figure of one run's tables (see the module doc): grids and the strip for
    two-attribute spaces (kind "auto" or "grid"), heatmaps otherwise ("heatmap" forces them).
    Columns are generations (at most `max_generations`, evenly spread); a second row holds the
    tables recorded right after forgetting. Returns the Figure (nothing written)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: allowed: {', '.join(KINDS)}")
    every = check_languages(tables)
    if not every:
        raise ValueError("language tables: none given (the run wrote no language.json or languages.jsonl)")
    spaces = {tuple(t.n_values) for t in every}
    if len(spaces) > 1:
        raise ValueError(f"language tables: different object spaces {sorted(spaces)}; draw one run at a time")
    two = len(every[0].n_values) == 2
    if kind == "grid" and not two:
        raise ValueError(f"kind 'grid': needs 2 attributes, the objects have {len(every[0].n_values)}; use heatmap")
    grid = two and kind != "heatmap"
    shown = select_generations(every, max_generations)
    generations = sorted({t.generation for t in shown})
    rows = [w for w in WHEN if any(t.when == w for t in shown)]
    cell_w, cell_h = _panel_size(every[0], grid)
    strip = grid and len(every) > 1
    strip_h = 0.22 * len(every) + (1.2 if len(every[0].objects) <= STRIP_MAX_OBJECTS else 0.6) if strip else 0
    width = max(cell_w * len(generations) + 1.0, 8.0 if strip else 5.0)
    height = cell_h * len(rows) + strip_h + 0.9
    fig = Figure(figsize=(width, height), layout="constrained")
    spec = fig.add_gridspec(len(rows) + (1 if strip else 0), len(generations),
                            height_ratios=[cell_h] * len(rows) + ([strip_h] if strip else []))
    image = None
    ids = message_ids(every)
    for r, when in enumerate(rows):
        for c, generation in enumerate(generations):
            ax = fig.add_subplot(spec[r, c])
            found = [t for t in shown if t.generation == generation and t.when == when]
            if not found:
                ax.set_axis_off()
                continue
            if grid:
                draw_grid(ax, found[0], ids)
            else:
                image = draw_heatmap(ax, found[0])
    if strip:
        draw_strip(fig.add_subplot(spec[len(rows), :]), every)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.6, label="share of objects with the attribute value")
    fig.suptitle(title or ("object -> message per generation\n(one colour per distinct message)" if grid
                           else "symbol at position x attribute value, per generation"), fontsize=10)
    return fig


def _panel_size(language: Language, grid: bool) -> tuple[float, float]:
    """Inches per panel: a grid cell wide enough for a message, a heatmap sized by its rows and columns."""
    if grid:
        rows, cols = language.n_values
        length = language.messages.shape[1] + (1 if language.vocab_size > 10 else 0) * language.messages.shape[1]
        return max(2.4, cols * (0.12 * length + 0.25) + 0.9), max(2.0, rows * 0.28 + 1.2)
    matrix, row_labels, column_labels = symbol_attribute_matrix(language)
    return max(2.8, len(column_labels) * 0.16 + 1.4), max(2.4, len(row_labels) * 0.14 + 1.4)
