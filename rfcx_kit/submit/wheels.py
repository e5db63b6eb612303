"""The wheels an offline environment needs: ``pip install --no-index --find-links DIR NAME`` must find every one.

A Kaggle notebook without internet installs a package's requirements from wheels shipped beside it. They come
from a folder the user filled (``pip download --only-binary=:all: --python-version 3.11 -d DIR onnxruntime
soundfile``: the right choice when Kaggle's Python differs from this one), or, offline, they are packed again from
this environment's installed distributions: each distribution's files as its ``RECORD`` lists them, with its own
``WHEEL`` tags (a wheel of the Python and platform that runs rfcx-kit, which is what a fresh environment of the
same Python installs). Scripts outside site-packages (console entry points) are left out: the package imports.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.tags import parse_tag, sys_tags
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.io import atomic_path


def closure(names: list[str]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` need, with their requirements (markers evaluated here, extras left
    out), each once, in a stable order. Raises DataError naming one that is not installed."""
    env = default_environment()
    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop(0))
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise DataError(f"{name} is not installed here, so its wheel cannot be packed: pip install it, or give a "
                            "folder of wheels (pip download ...)") from None
        seen[name] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
                todo.append(req.name)
    return [seen[k] for k in sorted(seen)]


def wheel_name(dist: metadata.Distribution) -> str:
    """``{name}-{version}-{tag}.whl``: of the tags the distribution's own WHEEL file lists, the one this interpreter
    prefers (``py3-none-any`` of a ``py2.py3`` wheel), so that pip of the same Python installs it."""
    text = dist.read_text("WHEEL") or ""
    listed = re.findall(r"^Tag:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    if not listed:
        raise DataError(f"{dist.metadata['Name']}: installed without a WHEEL record (not from a wheel); give a folder "
                        "of wheels instead")
    own = {str(t) for tag in listed for t in parse_tag(tag)}
    tags = [str(t) for t in sys_tags() if str(t) in own] or listed
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    return f"{name}-{dist.version}-{tags[0]}.whl"


def repack(dist: metadata.Distribution, out_dir: Path) -> Path:
    """A wheel of an installed distribution: every file its RECORD lists inside site-packages, and a RECORD of
    exactly those. Written atomically into ``out_dir``."""
    root = Path(dist.locate_file(""))
    files = [f for f in (dist.files or []) if not str(f).startswith("..") and "__pycache__" not in str(f)]
    info = next((f for f in files if str(f).endswith(".dist-info/RECORD")), None)
    if info is None:
        raise DataError(f"{dist.metadata['Name']}: no RECORD among its installed files; give a folder of wheels")
    rows = {str(f): (f.hash.mode + "=" + f.hash.value if f.hash else "", str(f.size or "")) for f in files}
    path = Path(out_dir) / wheel_name(dist)
    with atomic_path(path, suffix=".whl") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for f in files:
            name = str(f)
            if name == str(info):
                continue
            source = root / name
            if source.is_file():
                z.write(source, name)
            else:
                rows.pop(name, None)  # listed but gone (a compiled file removed since): not in the wheel either
        record = io.StringIO()
        writer = csv.writer(record, lineterminator="\n")
        for name, (digest, size) in rows.items():
            writer.writerow([name, digest, size] if name != str(info) else [name, "", ""])
        z.writestr(str(info), record.getvalue())
    return path


def collect(names: list[str], out_dir: Path, source: Path | None = None) -> list[Path]:
    """The wheels of ``names`` and their requirements into ``out_dir``: copied from ``source`` (a folder of wheels;
    each requirement must be there) or packed from this environment. Returns the wheel paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if source is None:
        return [repack(dist, out_dir) for dist in closure(names)]
    wheels = sorted(Path(source).glob("*.whl"))
    by_name = {canonicalize_name(w.name.split("-")[0]): w for w in wheels}
    missing = [n for n in names if canonicalize_name(n) not in by_name]
    if missing:
        raise DataError(f"{source}: no wheel of {', '.join(missing)} (it holds {len(wheels)} wheel(s)); fill it with "
                        f"pip download --only-binary=:all: -d {source} {' '.join(names)}")
    copied = []
    for wheel in wheels:  # all of them: the requirements' wheels are among them, whatever they are called
        target = out_dir / wheel.name
        shutil.copy2(wheel, target)
        copied.append(target)
    return copied
