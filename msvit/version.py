"""The package version, and installed packages' versions (its own module, so any layer can read
them without importing the package)."""
from __future__ import annotations

__version__ = "0.1.0"


def package_versions(dists: tuple[str, ...] | list[str], python: bool = True) -> dict[str, str]:
    """``{dist: version}`` of the installed ones among ``dists`` (package metadata, no imports:
    importing coremltools/executorch is slow and noisy), with ``python`` first."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()} if python else {}
    for dist in dists:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out
