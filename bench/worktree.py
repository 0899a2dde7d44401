"""Another commit's gateway and units beside the current ones: a detached git worktree of that
commit under the temp dir, its processes started with the same interpreter, the worktree as
their working directory and first import path, so `python -m mbs` runs that commit's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import cwd_of

REPO = Path(__file__).resolve().parents[1]
# The packages a gateway or unit process imports from the checkout; each must come from the
# worktree (the editable install of the current checkout must not win).
PACKAGES = ("mbs", "gateway", "services", "contracts")
_PROBE = (
    "import importlib, json; "
    f"mods = {{n: importlib.import_module(n) for n in {PACKAGES!r}}}; "
    "print(json.dumps({n: m.__spec__.origin or list(m.__path__)[0] for n, m in mods.items()}))"
)


def git(*args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Worktree:
    commit: str  # full hash
    path: Path
    reused: bool

    @property
    def short(self) -> str:
        return self.commit[:7]

    def env(self) -> dict[str, str]:
        """What a child needs on top of the bench's environment to import this commit."""
        return {"PYTHONPATH": str(self.path)}


def head_commit() -> str:
    return git("rev-parse", "HEAD")


def open_worktree(ref: str) -> Worktree:
    """A detached worktree of `ref` under the temp dir: reused if an earlier run left one."""
    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    path = (Path(tempfile.gettempdir()) / f"mbs-bench-worktree-{commit[:12]}").resolve()
    if path in _worktrees() and path.is_dir():
        if git("rev-parse", "HEAD", cwd=path) != commit:
            git("checkout", "--quiet", "--detach", commit, cwd=path)
        return Worktree(commit, path, reused=True)
    if path.exists():
        raise RuntimeError(f"{path} exists and is no worktree of this repository: remove it")
    # --force: a worktree registered at this path whose directory is gone is taken over
    git("worktree", "add", "--force", "--detach", str(path), commit)
    return Worktree(commit, path, reused=False)


def remove_worktree(tree: Worktree) -> None:
    git("worktree", "remove", "--force", str(tree.path))


def _worktrees() -> set[Path]:
    listed = git("worktree", "list", "--porcelain").splitlines()
    prefix = "worktree "
    return {Path(line.removeprefix(prefix)).resolve() for line in listed if line.startswith(prefix)}


def imports_from(tree: Worktree, env: Mapping[str, str]) -> dict[str, str]:
    """Where a child started as the bench starts one (this interpreter, `env`, cwd = the
    worktree) finds each package; raises unless every one is the worktree's."""
    full = {k: v for k, v in {**os.environ, **env, **tree.env()}.items() if v}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=tree.path,
        env=full,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the worktree of {tree.short} does not import:\n{done.stderr}")
    found: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = {n: p for n, p in found.items() if not Path(p).resolve().is_relative_to(tree.path)}
    if wrong:
        raise RuntimeError(f"a child in {tree.path} would import these from elsewhere: {wrong}")
    return found


def check_cwd(tree: Worktree, pids: Mapping[str, int]) -> None:
    """Each running child works in the worktree (its `-m mbs` import path starts there)."""
    for name, pid in pids.items():
        if (cwd := cwd_of(pid)) != tree.path:
            raise RuntimeError(f"{name} (pid {pid}) runs in {cwd}, not in {tree.path}")
