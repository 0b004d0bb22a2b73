"""Run an index write operation killed (SIGKILL) before each of its write steps in turn.

``python -m tests.indexing.crashpoints SPEC.json`` reads a list of cases
``{"op": "build"|"add"|"remove", "folder": DIR, "copies": DIR, ...}``. For each case it first
runs the operation once on a copy of ``folder`` (``copies/ref``) while recording every write
step, then, for every step ``k``, on a fresh copy (``copies/kill-k``) in a child process that
kills itself just before step ``k``. It writes ``copies/steps.json`` (the step labels) and
``copies/exits.json`` (how each child ended); the test then opens every copy.

A write step is every call that changes what is in the folder: ``os.replace``, ``os.rename``,
``os.unlink``, ``os.remove``, ``os.rmdir`` and ``faiss.write_index`` (``shutil.rmtree`` and
``Path.unlink`` go through them). ``os.fsync`` is not one: a killed process leaves the same
files whether or not it synced them (syncing matters for a power cut, not a kill).

Children are forked from this process, which imported torch and faiss once and runs no
model: every embedding is already in the folder's shards, so a child only does file and
FAISS work. Forking keeps each of the dozens of kills to milliseconds instead of a new
interpreter each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import traceback
from pathlib import Path

STEP_FUNCTIONS = ("replace", "rename", "unlink", "remove", "rmdir")


def _label(name: str, args: tuple) -> str:
    target = args[1] if name in ("replace", "rename") and len(args) > 1 else (args[0] if args else "")
    return f"{name} {Path(str(target)).name}" if isinstance(target, str | os.PathLike) else name


def _instrument(kill_at: int | None, steps: list[str]) -> None:
    """Count write steps; SIGKILL this process just before step number ``kill_at``."""
    import faiss

    def wrap(module, name: str) -> None:
        original = getattr(module, name)

        def step(*args, **kwargs):
            if kill_at is not None and len(steps) == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            steps.append(_label(name, args))
            return original(*args, **kwargs)

        setattr(module, name, step)

    for name in STEP_FUNCTIONS:
        wrap(os, name)
    wrap(faiss, "write_index")


def _run(case: dict, folder: Path, encoder) -> None:
    from catalog import load_catalog
    from indexing.build import BuildConfig, build

    if case["op"] == "build":
        cfg = BuildConfig(index=case.get("index", "flat"), ondisk=case.get("ondisk", False), nlist=case.get("nlist"),
                          num_workers=0, batch_size=8, shard_size=case["shard_size"], progress=False,
                          tune_queries=8)
        build(load_catalog(case["catalog"]), folder, encoder, cfg)
        return
    import indexing.__main__ as cli

    cli._encoder_for_index = lambda *a: encoder  # the CLI's own path, without loading the encoder again
    if case["op"] == "add":
        argv = ["add", "--index", str(folder), "--catalog", case["catalog"], "--workers", "0", "--device", "cpu"]
    else:
        argv = ["remove", "--index", str(folder), "--ids", *case["ids"]]
    code = cli.main(argv)
    if code != 0:
        raise RuntimeError(f"python -m indexing {' '.join(argv)} exited {code}")


def _child(case: dict, folder: Path, encoder, kill_at: int | None, steps_file: Path | None) -> None:
    """Runs in the forked child; never returns."""
    steps: list[str] = []
    try:
        _instrument(kill_at, steps)
        _run(case, folder, encoder)
        if steps_file is not None:
            steps_file.write_text(json.dumps(steps))
        os._exit(0)
    except BaseException:  # noqa: BLE001 - reported through the exit code and stderr
        traceback.print_exc()
        os._exit(1)


def _fork(case: dict, folder: Path, encoder, kill_at: int | None, steps_file: Path | None = None) -> str:
    shutil.copytree(case["folder"], folder, symlinks=True)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(case, folder, encoder, kill_at, steps_file)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def main(spec_path: str) -> int:
    import faiss
    import torch

    torch.set_num_threads(1)  # no thread pools in the parent that a forked child would lack
    faiss.omp_set_num_threads(1)
    from indexing.encoder import Encoder, EncoderConfig

    spec = json.loads(Path(spec_path).read_text())
    encoder = Encoder.builtin(EncoderConfig(image_size=spec["image_size"]), device="cpu")
    for case in spec["cases"]:
        copies = Path(case["copies"])
        copies.mkdir(parents=True, exist_ok=True)
        exits = {"ref": _fork(case, copies / "ref", encoder, None, copies / "steps.json")}
        if exits["ref"] != "exit 0":
            (copies / "exits.json").write_text(json.dumps(exits))
            continue
        steps = json.loads((copies / "steps.json").read_text())
        for k in range(len(steps)):
            exits[f"kill-{k}"] = _fork(case, copies / f"kill-{k}", encoder, k)
        (copies / "exits.json").write_text(json.dumps(exits))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
