"""Build hooks that put the browser runtimes of `edgeport serve` into the wheel (the rest is in pyproject.toml).

The page loads onnxruntime-web and LiteRT.js from the local server, never a CDN. Their files come from npm
(web/package.json + web/package-lock.json pin them; `npm ci` in web/ installs them into web/node_modules).
edgeport/web/vendor.json lists the only files the page loads; these hooks copy exactly those (and each
package's package.json, for its version and license) into edgeport/web/vendor/ of the wheel, so that
`pip install edgeport[serve]` serves the page without a source checkout. A wheel built without them could
not run a model in the page, so the build stops with a message saying how to get them.

An editable install (`pip install -e .`) copies nothing: serve.py finds web/node_modules of the checkout.
An sdist carries the same files under web/node_modules/, so a wheel built from it (`python -m build`) has them.
"""

import json
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.errors import SetupError

ROOT = Path(__file__).resolve().parent  # the project root: a checkout or an unpacked sdist
NODE_MODULES = Path("web") / "node_modules"  # relative to ROOT
TABLE = Path("edgeport") / "web" / "vendor.json"


def vendor_files(root: Path) -> list[Path]:
    """The runtime files under `root`/web/node_modules the page needs, relative to node_modules (package-relative
    paths, the layout edgeport/web/vendor/ keeps). SetupError naming the first missing file and the fix."""
    table = json.loads((root / TABLE).read_text(encoding="utf-8"))["runtimes"]
    wanted: list[Path] = []
    for entry in table.values():
        package = Path(entry["package"])
        wanted.append(package / "package.json")
        wanted += [package / entry["folder"] / f for f in entry["files"]]
    missing = [p for p in wanted if not (root / NODE_MODULES / p).is_file()]
    if missing:
        raise SetupError(
            f"edgeport's page needs the browser runtimes, and {NODE_MODULES / missing[0]} is missing "
            f"({len(missing)} of {len(wanted)} files): run `npm ci` in web/ (or `make setup`) before building the "
            "wheel. They are the npm packages pinned in web/package-lock.json; see README, Browser demo.")
    return list(dict.fromkeys(wanted))


class build_py_with_runtimes(build_py):  # noqa: N801 - setuptools command classes are named like the command
    """build_py, then copy the page's runtime files into <build>/edgeport/web/vendor/."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install serves web/node_modules of the checkout itself
        for rel in vendor_files(ROOT):
            dst = Path(self.build_lib) / "edgeport" / "web" / "vendor" / rel
            self.mkpath(str(dst.parent))
            self.copy_file(str(ROOT / NODE_MODULES / rel), str(dst))


class sdist_with_runtimes(sdist):  # noqa: N801
    """sdist that also carries the page's runtime files (under web/node_modules/) and web/'s npm pins."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        extra = [NODE_MODULES / rel for rel in vendor_files(ROOT)]
        extra += [Path("web") / "package.json", Path("web") / "package-lock.json"]
        for rel in extra:
            dst = Path(base_dir) / rel
            self.mkpath(str(dst.parent))
            self.copy_file(str(ROOT / rel), str(dst))


setup(cmdclass={"build_py": build_py_with_runtimes, "sdist": sdist_with_runtimes})
