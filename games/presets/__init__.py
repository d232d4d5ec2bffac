"""Named presets for the game scripts: `games/presets/<name>.yaml`, loaded with `load_preset`;
shipped sweep grids: `games/presets/sweeps/<name>.yaml`, found with `available_sweeps`.

Every YAML file of the package's commands (presets, grid files) is read with `read_yaml`, which
refuses what `yaml.safe_load` would take silently or pay dearly for: aliases that expand to a huge
value (a 'billion laughs' file of a few hundred bytes), a key given twice in one mapping (YAML
keeps the last), nesting deeper than Python's stack.
"""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from emergent_frl.sweeps import shorten

PRESET_DIR = pathlib.Path(__file__).resolve().parent
SWEEP_DIR = PRESET_DIR / "sweeps"
MAX_YAML_NODES = 100_000  # values of a document with its aliases expanded; a grid file has dozens
MAX_YAML_BYTES = 250_000  # a few seconds of the pure-Python parser (libyaml's, faster, crashes on deep nesting)
_MERGE = "tag:yaml.org,2002:merge"


class YamlError(ValueError):
    """A YAML file that cannot be read or is refused; the message names the file."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [child for pair in node.value for child in pair]
    return []


def _check_keys(node: yaml.MappingNode, keys: yaml.constructor.SafeConstructor) -> None:
    """A key given twice in one mapping is an error (merge keys `<<` excepted: overriding a merged
    key is what they are for). Checked on the composed nodes, before any merge is applied; keys
    compare as Python dict keys do (1 and 1.0 are one key)."""
    first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
            continue
        try:
            key = keys.construct_object(key_node, deep=True)
            seen = first.get(key)
        except (yaml.YAMLError, ValueError, TypeError):
            continue  # not a valid key: the constructor reports it
        line = key_node.start_mark.line + 1
        if seen is not None:
            raise YamlError(f"line {line}: key {shorten(key)} given twice in one mapping (first on line {seen}); "
                            "YAML would silently keep the last")
        first[key] = line


def _check_document(root: yaml.Node, limit: int) -> None:
    """Count the document's values as if every alias were expanded (each alias weighs its whole
    subtree; shared subtrees are sized once), stopping past `limit`; check each mapping's keys."""
    sizes: dict[int, int] = {}
    keys = yaml.constructor.SafeConstructor()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise YamlError(f"line {node.start_mark.line + 1}: an alias refers to a value that holds it "
                                "(a recursive value)")
            return known
        sizes[id(node)] = -1
        if isinstance(node, yaml.MappingNode):
            _check_keys(node, keys)
        total = 1
        for child in _children(node):
            total += size(child)
            if total > limit:
                raise YamlError(f"too large: its aliases expand to more than {limit:,} values")
        sizes[id(node)] = total
        return total

    size(root)


class StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that checks each composed document (`_check_document`) before building
    any Python value from it."""

    max_nodes = MAX_YAML_NODES

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _check_document(node, self.max_nodes)
        return node


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_yaml(text: str, where: str) -> Any:
    """The value of one YAML document; YamlError naming `where` for anything refused."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except YamlError as error:
        raise YamlError(f"{where}: {error}") from None
    except yaml.YAMLError as error:
        raise YamlError(f"{where}: not valid YAML ({_clip(str(error))})") from None
    except RecursionError:
        raise YamlError(f"{where}: not valid YAML (nested too deeply)") from None
    except ValueError as error:  # e.g. an integer past Python's digit limit
        raise YamlError(f"{where}: not valid YAML ({_clip(str(error))})") from None


def read_yaml(path: pathlib.Path, where: str | None = None) -> Any:
    """`load_yaml` of a file, read as UTF-8 and at most MAX_YAML_BYTES long."""
    where = where or str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
        text = data.decode("utf-8")
    except OSError as error:
        raise YamlError(f"{where}: cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise YamlError(f"{where}: cannot read (not UTF-8 text: byte {error.start})") from None
    if len(data) > MAX_YAML_BYTES:
        raise YamlError(f"{where}: too large (over {MAX_YAML_BYTES:,} bytes)")
    return load_yaml(text, where)


def available_presets() -> list[str]:
    """Names of the presets shipped with the package (file names without .yaml)."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's settings as a dict (config fields plus run-level keys such as `iterations`)."""
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"--preset {name!r}: unknown preset; available: {available_presets()}")
    values = read_yaml(path, f"preset {path}")
    if not isinstance(values, dict):
        raise ValueError(f"preset {path}: must hold a mapping of settings, got {type(values).__name__}")
    return values


def available_sweeps() -> list[str]:
    """Names of the sweep grids shipped with the package (`python -m games.sweep NAME --out DIR`)."""
    return sorted(path.stem for path in SWEEP_DIR.glob("*.yaml"))
