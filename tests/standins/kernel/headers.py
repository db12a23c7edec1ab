"""STAND-IN for a Debian kernel headers package (tests only; never shipped).

The package the rocm role installs for DKMS is linux-headers-<running kernel>.
The test containers run the host's kernel, for which no distribution ships
headers, so tests/lab/fixtures/kernel_headers.py builds this stand-in with the
host's release: Debian's layout (/usr/src/linux-headers-<release>, and the
/lib/modules/<release>/build link DKMS looks for), holding only a Makefile and
an empty include/ that say they are stand-ins. The Makefile starts as a real
kernel's does (VERSION, PATCHLEVEL, SUBLEVEL): that is the kernel version a
build against these headers sees. By default it is the release's own; a
scenario that needs a kernel AMD's driver builds for may present the running
release as another version (named in the package's description).
"""

from __future__ import annotations

import re

STANDIN = "STAND-IN (mi50-llm-stack tests): not kernel headers; nothing can be compiled against them."


def kernel_version(release: str) -> tuple[int, int, int]:
    """(VERSION, PATCHLEVEL, SUBLEVEL) of a release string: 6.18.44-fc-v1300 -> (6, 18, 44)."""
    numbers = [int(n) for n in re.findall(r"\d+", release.split("-")[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


def package(release: str, presents_as: str | None = None) -> dict:
    """name, version, files {path: text}, links {path: target} of the headers package for `release`.

    `presents_as` (e.g. "6.8.0"): the kernel version the Makefile declares, when
    it is not the release's own."""
    tree = f"usr/src/linux-headers-{release}"
    version, patchlevel, sublevel = kernel_version(presents_as or release)
    shown = f" presented as Linux {presents_as}" if presents_as else ""
    return {
        "name": f"linux-headers-{release}",
        "version": "1.0~mi50standin1",
        "description": f"STAND-IN for the headers of Linux {release}{shown} (mi50-llm-stack tests)",
        "files": {
            f"{tree}/Makefile": (f"# {STANDIN}\n# Kernel release: {release}{shown}\n"
                                 f"VERSION = {version}\nPATCHLEVEL = {patchlevel}\nSUBLEVEL = {sublevel}\n"
                                 "EXTRAVERSION =\n"),
            f"{tree}/include/STANDIN": STANDIN + "\n",
        },
        "links": {f"lib/modules/{release}/build": f"/{tree}"},
    }
