"""Compile the gRPC API (``proto/**/*.proto``) into the committed Python modules.

``python -m proto.build`` regenerates ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` next
to each ``.proto``; ``--check`` only compares and exits 1 when the committed code is stale.

The generated code is committed (so the package imports without a build step) and imported
as ``proto.fashion.retrieval.v1.retrieval_pb2`` from the repository root. protoc writes
imports relative to the proto root (``from fashion.retrieval.v1 import ...``), so those are
rewritten to the ``proto.`` package; the descriptor file names stay ``fashion/...`` so
reflection shows the canonical names.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import tempfile
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PYTHON_PACKAGE = "proto"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(p for p in root.rglob("*.proto") if ".venv" not in p.parts)


def _fix_imports(text: str, proto_packages: set[str]) -> str:
    """Make protoc's root-relative imports and module names absolute under ``proto.``."""
    for pkg in sorted(proto_packages, key=len, reverse=True):
        text = re.sub(rf"^from {re.escape(pkg)} import ", f"from {PYTHON_PACKAGE}.{pkg} import ", text, flags=re.M)
        text = re.sub(rf"^import {re.escape(pkg)}\.", f"import {PYTHON_PACKAGE}.{pkg}.", text, flags=re.M)
        # the module name given to the descriptor builder (not the service's full name)
        text = re.sub(rf"'{re.escape(pkg)}\.(\w+_pb2)'", rf"'{PYTHON_PACKAGE}.{pkg}.\1'", text)
    return text


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> dict[Path, str]:
    """Run protoc (from grpcio-tools) into ``out_dir``; return {path relative to root: text}."""
    from grpc_tools import protoc

    files = proto_files(root)
    if not files:
        raise SystemExit(f"no .proto files under {root}")
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(f.relative_to(root)) for f in files],
    ]
    rc = protoc.main(args)
    if rc != 0:
        raise SystemExit(f"protoc failed with exit code {rc}: {' '.join(args[1:])}")
    packages = {".".join(f.relative_to(root).parent.parts) for f in files}
    out: dict[Path, str] = {}
    for path in sorted(out_dir.rglob("*")):
        if path.is_file() and path.name.endswith(GENERATED_SUFFIXES):
            out[path.relative_to(out_dir)] = _fix_imports(path.read_text(encoding="utf-8"), packages)
    return out


def _package_inits(generated: dict[Path, str]) -> list[Path]:
    """``__init__.py`` files every generated module's folder needs to be importable."""
    need = set()
    for rel in generated:
        for parent in rel.parents:
            if parent != Path("."):
                need.add(parent / "__init__.py")
    return sorted(need)


def build(check: bool = False, root: Path = PROTO_ROOT) -> list[str]:
    """Regenerate (or with ``check``, compare); return the stale or written file names."""
    from catalog import atomic_write_text

    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp), root)
    changed = []
    for rel, text in generated.items():
        target = root / rel
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        changed.append(str(rel))
        if check:
            diff = difflib.unified_diff(
                (current or "").splitlines(), text.splitlines(), f"committed/{rel}", f"generated/{rel}", lineterm=""
            )
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            atomic_write_text(target, text)
    for init in _package_inits(generated):
        if not (root / init).exists():
            changed.append(str(init))
            if not check:
                atomic_write_text(root / init, '"""Generated gRPC code (python -m proto.build)."""\n')
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proto.build", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail (exit 1) if the committed code is not current")
    args = parser.parse_args(argv)
    changed = build(check=args.check)
    if args.check:
        if changed:
            print(f"generated code is stale: {', '.join(changed)}; run `python -m proto.build`", file=sys.stderr)
            return 1
        print("generated code is current")
        return 0
    print(f"wrote {', '.join(changed)}" if changed else "generated code already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
