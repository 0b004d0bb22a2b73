"""Install step for MediaPipe's BlazePose models (``make pose-models``).

MediaPipe ships its pose detector, pose landmark model and face detector as ``.tflite``
files inside the ``mediapipe`` wheel (Apache-2.0). Installing mediapipe itself would pin protobuf<5 and
numpy<2 and pull in jax, so instead this module downloads the wheel with
``pip download --no-deps`` into a temporary folder, extracts the three model files, checks
them against pinned SHA-256 digests and moves them into ``models/pose/`` atomically. The
models then run with ``ai-edge-litert``'s interpreter (see :mod:`generators.pairs.pose`).

This runs at install time only. Run-time code calls :func:`model_paths`, which never
downloads: it raises :class:`PoseModelsMissing` naming the command to run instead.

    python -m generators.pairs.pose_models fetch --out models/pose
    python -m generators.pairs.pose_models verify --dir models/pose
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from catalog import atomic_write_bytes, atomic_write_text

MEDIAPIPE_VERSION = "0.10.21"
DEFAULT_DIR = Path("models/pose")
MANIFEST = "manifest.json"
FETCH_COMMAND = "python -m generators.pairs.pose_models fetch --out models/pose   (or: make pose-models)"


@dataclass(frozen=True)
class ModelFile:
    name: str  # file name inside the output folder
    wheel_path: str  # path inside the mediapipe wheel
    sha256: str  # digest of the file as shipped in mediapipe 0.10.21


MODELS: tuple[ModelFile, ...] = (
    ModelFile(
        "pose_detection.tflite",
        "mediapipe/modules/pose_detection/pose_detection.tflite",
        "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
    ),
    ModelFile(
        "pose_landmark_full.tflite",
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    ),
    # BlazeFace (short range): tells a face from the back of a head, which the pose
    # landmarks cannot (they are trained to output a face even for a back view).
    ModelFile(
        "face_detection_short_range.tflite",
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
)


class PoseModelsMissing(FileNotFoundError):
    """The pose models are not installed (or damaged) in the expected folder."""


class PoseModelsFetchError(RuntimeError):
    """Downloading or extracting the pose models failed."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _looks_like_tflite(data: bytes) -> bool:
    # FlatBuffer with the TFLite file identifier at bytes 4..8.
    return len(data) > 8 and data[4:8] == b"TFL3"


def model_paths(model_dir: str | Path = DEFAULT_DIR, check_digest: bool = False) -> dict[str, Path]:
    """Paths of the installed models, keyed ``detector``, ``landmark`` and ``face``.

    Never downloads. ``check_digest`` re-hashes the files (about 30 ms); the default only
    checks that they exist, which is what loading at run time needs.
    """
    model_dir = Path(model_dir)
    out: dict[str, Path] = {}
    for key, spec in zip(("detector", "landmark", "face"), MODELS, strict=True):
        path = model_dir / spec.name
        if not path.is_file():
            raise PoseModelsMissing(
                f"pose model {path} is missing; install the pose models with:\n    {FETCH_COMMAND}"
            )
        if check_digest and sha256_file(path) != spec.sha256:
            raise PoseModelsMissing(
                f"pose model {path} does not match its pinned SHA-256 (damaged or replaced); "
                f"reinstall with:\n    {FETCH_COMMAND}"
            )
        out[key] = path
    return out


def _download_wheel(dest: Path, version: str, pip_args: list[str]) -> Path:
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        "-d", str(dest), f"mediapipe=={version}", *pip_args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise PoseModelsFetchError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}")
    wheels = sorted(dest.glob("mediapipe-*.whl"))
    if not wheels:
        raise PoseModelsFetchError(f"pip download succeeded but left no mediapipe wheel in {dest}")
    return wheels[0]


def extract_models(wheel: Path, out_dir: Path, expected_digests: bool = True) -> dict[str, str]:
    """Copy the model files out of ``wheel`` into ``out_dir`` (each atomically); digests."""
    digests: dict[str, str] = {}
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise PoseModelsFetchError(f"{wheel} is not a valid wheel: {exc}") from exc
    with zf:
        names = set(zf.namelist())
        for spec in MODELS:
            if spec.wheel_path not in names:
                raise PoseModelsFetchError(
                    f"{wheel.name} has no {spec.wheel_path}; mediapipe {MEDIAPIPE_VERSION} ships it"
                )
            data = zf.read(spec.wheel_path)
            if not _looks_like_tflite(data):
                raise PoseModelsFetchError(f"{spec.wheel_path} in {wheel.name} is not a TFLite model")
            digest = hashlib.sha256(data).hexdigest()
            if expected_digests and digest != spec.sha256:
                raise PoseModelsFetchError(
                    f"{spec.wheel_path}: SHA-256 {digest} does not match the pinned {spec.sha256}"
                )
            atomic_write_bytes(out_dir / spec.name, data)
            os.chmod(out_dir / spec.name, 0o644)  # mkstemp creates 0600; models are shared read-only
            digests[spec.name] = digest
    return digests


def fetch(
    out_dir: str | Path = DEFAULT_DIR,
    version: str = MEDIAPIPE_VERSION,
    wheel: str | Path | None = None,
    force: bool = False,
    pip_args: list[str] | None = None,
) -> Path:
    """Install the pose and face models into ``out_dir``; a no-op when they are already there.

    ``wheel`` uses an already downloaded mediapipe wheel instead of calling pip (offline
    installs). The manifest is written last, so a folder with a manifest is complete.
    """
    out_dir = Path(out_dir)
    if not force and (out_dir / MANIFEST).is_file():
        try:
            model_paths(out_dir, check_digest=True)
            return out_dir
        except PoseModelsMissing:
            pass  # damaged: fetch again
    out_dir.mkdir(parents=True, exist_ok=True)
    pinned = version == MEDIAPIPE_VERSION
    with tempfile.TemporaryDirectory(prefix="mediapipe-wheel-") as tmp:
        whl = Path(wheel) if wheel else _download_wheel(Path(tmp), version, pip_args or [])
        if not whl.is_file():
            raise PoseModelsFetchError(f"wheel {whl} does not exist")
        digests = extract_models(whl, out_dir, expected_digests=pinned)
        wheel_name = whl.name
    manifest = {
        "source": f"mediapipe=={version} wheel ({wheel_name}), Apache-2.0",
        "files": {name: {"sha256": d, "bytes": (out_dir / name).stat().st_size} for name, d in digests.items()},
    }
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return out_dir


def verify(model_dir: str | Path = DEFAULT_DIR) -> dict[str, str]:
    """Re-hash the installed files against the pinned digests and the folder's manifest."""
    model_dir = Path(model_dir)
    model_paths(model_dir, check_digest=False)
    manifest_path = model_dir / MANIFEST
    recorded = json.loads(manifest_path.read_text())["files"] if manifest_path.is_file() else {}
    out = {}
    for spec in MODELS:
        d = sha256_file(model_dir / spec.name)
        want = recorded.get(spec.name, {}).get("sha256", spec.sha256)
        if d != want:
            raise PoseModelsMissing(f"{model_dir / spec.name}: SHA-256 {d} != recorded {want}; {FETCH_COMMAND}")
        out[spec.name] = d
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generators.pairs.pose_models", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download the mediapipe wheel and extract the pose and face models")
    f.add_argument("--out", type=Path, default=DEFAULT_DIR)
    f.add_argument("--version", default=MEDIAPIPE_VERSION, help="mediapipe version (digests pinned for the default)")
    f.add_argument("--wheel", type=Path, default=None, help="use this local mediapipe wheel instead of pip")
    f.add_argument("--force", action="store_true", help="fetch even when valid models are present")
    v = sub.add_parser("verify", help="check the installed models against their digests")
    v.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "fetch":
            out = fetch(args.out, args.version, args.wheel, args.force)
            for name, d in verify(out).items():
                print(f"{out / name}  sha256 {d}")
        else:
            for name, d in verify(args.dir).items():
                print(f"{Path(args.dir) / name}  sha256 {d}  ok")
    except (PoseModelsFetchError, PoseModelsMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main())
