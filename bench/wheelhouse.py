"""The wheelhouse for an air-gapped GPU host: our pinned dependencies as wheels, never torch or CUDA.

    python bench/wheelhouse.py download [--python-version 3.11] [--platform manylinux_2_28_x86_64]
    python bench/wheelhouse.py install-list        # on the GPU host: the wheels to install there

`download` (what `make wheelhouse` runs, with network) fetches into wheelhouse/ one wheel per pin of
requirements.lock for the GPU host's Python and platform, without dependencies (the lock is complete),
leaving out what the host brings with its CUDA build of torch: torch, triton and the nvidia-* / cuda-*
packages. A pin with no wheel on the index (deepspeed is an sdist) is built into a wheel here with
`pip wheel --no-deps --no-build-isolation` (DeepSpeed's setup.py imports the torch of this venv; its ops
are compiled on first use, so the wheel is pure Python).
`install-list` prints the wheel files to install on the host, leaving out the distributions the host's
torch itself requires (sympy, networkx, ...): the host keeps the versions its torch was built with.
"""

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

__all__ = ["parse_lock", "host_provided", "gpu_host_pins", "wheels_to_install", "torch_requirements"]

ROOT = Path(__file__).resolve().parent.parent
HOST_PACKAGES = {"torch", "triton", "pytorch-triton"}
HOST_PREFIXES = ("nvidia-", "cuda-")


def parse_lock(text: str, source: str = "requirements.lock") -> list[tuple[str, str]]:
    """(name, version) of every `name==version` line; blank lines and # comments are skipped."""
    pins = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip() or ";" in line or " " in version.strip():
            raise ValueError(f"{source}:{n}: {line!r} is not a plain pin; write it as name==version")
        pins.append((name.strip(), version.strip()))
    return pins


def host_provided(name: str) -> bool:
    """True for what the GPU host's CUDA torch brings: torch, triton and the NVIDIA / CUDA wheels."""
    canon = canonicalize_name(name)
    return canon in HOST_PACKAGES or canon.startswith(HOST_PREFIXES)


def gpu_host_pins(pins: list[tuple[str, str]]) -> list[str]:
    """The `name==version` requirements the wheelhouse carries: every pin the host does not provide."""
    return [f"{name}=={version}" for name, version in pins if not host_provided(name)]


def torch_requirements() -> set[str]:
    """Canonical names of the distributions the installed torch requires (empty without torch)."""
    try:
        reqs = metadata.requires("torch") or []
    except metadata.PackageNotFoundError:
        return set()
    return {canonicalize_name(Requirement(r).name) for r in reqs}


def wheels_to_install(wheel_files: list[str], keep_host: set[str]) -> list[str]:
    """The wheel files whose distribution neither the host provides nor is in keep_host (canonical names)."""
    chosen = []
    for f in sorted(wheel_files):
        name = canonicalize_name(parse_wheel_filename(Path(f).name)[0])
        if not host_provided(name) and name not in keep_host:
            chosen.append(f)
    return chosen


def _pip(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "pip", "--disable-pip-version-check", *args])


def download(lock: Path, dest: Path, python_version: str, platform: str) -> None:
    """Fill dest with the wheels of gpu_host_pins(lock); one pip call, then one per pin if that fails."""
    reqs = gpu_host_pins(parse_lock(lock.read_text(), str(lock)))
    dest.mkdir(parents=True, exist_ok=True)
    target = ["--platform", platform, "--python-version", python_version, "--implementation", "cp"]
    wheel_args = ["download", "--no-deps", "--only-binary=:all:", "--dest", str(dest), *target]
    if _pip(*wheel_args, *reqs) == 0:
        return
    missing = [r for r in reqs if _pip(*wheel_args, r) != 0]
    for r in missing:
        print(
            f"wheelhouse: no wheel of {r} for {platform} / Python {python_version}; building one", flush=True
        )
        if _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dest), r) != 0:
            sys.exit(f"wheelhouse: could not download or build {r}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="fetch the wheels (needs the network)")
    d.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    d.add_argument("--dest", type=Path, default=ROOT / "wheelhouse")
    d.add_argument("--python-version", default="3.11")
    d.add_argument("--platform", default="manylinux_2_28_x86_64")
    i = sub.add_parser("install-list", help="print the wheel files to install on this host")
    i.add_argument("--dest", type=Path, default=ROOT / "wheelhouse")
    args = p.parse_args(argv)
    if args.cmd == "download":
        download(args.lock, args.dest, args.python_version, args.platform)
    else:
        files = [str(f) for f in args.dest.glob("*.whl")]
        print("\n".join(wheels_to_install(files, torch_requirements())))


if __name__ == "__main__":
    main()
