"""The harness of the fault catalog (tests/test_faults_*.py): one bad input or fault per case.

A case names the command (`games.referential`, `analysis.plot`, ...), its arguments, the exit code
it must give and a fragment its one stderr line must hold. `run_fault` prepares the case's files,
hashes every file under the case's folder, runs the command's `main(argv)` in this process, and
asserts: the exit code, exactly one line on stderr, no traceback, the fragment, and every file that
existed before unchanged (bad input, exit 2, must also create nothing).

Arguments and the expected fragment may hold `{tmp}`: the case's own folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import pathlib
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Fault:
    name: str
    command: str  # a module with main(argv): games.referential, games.sweep, analysis.plot, ...
    argv: tuple[str, ...]
    code: int  # 2 bad input, 1 fault, 130 interrupted
    says: str  # a fragment of the one stderr line
    setup: Callable[[pathlib.Path], None] | None = None
    may_create: bool = False  # a fault found while working may leave new files (never changed old ones)
    patches: tuple = field(default=())  # (object, attribute, value) set for the case's duration

    def __str__(self) -> str:
        return self.name


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    """sha256 of every file under `folder` (the run lock's PID line excepted: it is rewritten by design)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != ".emergent-frl.lock":
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def run_fault(fault: Fault, tmp: pathlib.Path, monkeypatch=None) -> str:
    """Run one case and assert the contract; returns the stderr line."""
    tmp.mkdir(parents=True, exist_ok=True)
    if fault.setup is not None:
        fault.setup(tmp)
    argv = [arg.replace("{tmp}", str(tmp)) for arg in fault.argv]
    before = snapshot(tmp)
    module = importlib.import_module(fault.command)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        if fault.patches:
            assert monkeypatch is not None, "a case with patches needs the monkeypatch fixture"
            for target, attribute, value in fault.patches:
                monkeypatch.setattr(target, attribute, value)
            stack.callback(monkeypatch.undo)
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = module.main(argv)
            except SystemExit as exit_:
                code = exit_.code
    text = err.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    assert "Traceback" not in text, f"{fault}: {text}"
    assert code == fault.code, f"{fault}: exit {code}, expected {fault.code}; stderr: {text!r}"
    assert len(lines) == 1, f"{fault}: {len(lines)} stderr lines: {text!r}"
    says = fault.says.replace("{tmp}", str(tmp))
    assert says in lines[0], f"{fault}: {lines[0]!r} does not say {says!r}"
    after = snapshot(tmp)
    changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
    assert not changed, f"{fault}: existing files changed or vanished: {changed}"
    if not fault.may_create:
        assert sorted(after) == sorted(before), f"{fault}: created {sorted(set(after) - set(before))}"
    return lines[0]
