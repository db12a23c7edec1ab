"""STAND-IN for a Debian kernel headers package (tests only; never shipped).

The package the rocm role installs for DKMS is linux-headers-<running kernel>.
The test containers run the host's kernel, for which no distribution ships
headers, so tests/lab/fixtures/kernel_headers.py builds this stand-in with the
host's release: Debian's layout (/usr/src/linux-headers-<release>, and the
/lib/modules/<release>/build link DKMS looks for), holding only a Makefile and
an empty include/ that say they are stand-ins.
"""

from __future__ import annotations

STANDIN = "STAND-IN (mi50-llm-stack tests): not kernel headers; nothing can be compiled against them."


def package(release: str) -> dict:
    """name, version, files {path: text}, links {path: target} of the headers package for `release`."""
    tree = f"usr/src/linux-headers-{release}"
    return {
        "name": f"linux-headers-{release}",
        "version": "1.0~mi50standin1",
        "description": f"STAND-IN for the headers of Linux {release} (mi50-llm-stack tests)",
        "files": {
            f"{tree}/Makefile": f"# {STANDIN}\n# Kernel release: {release}\n",
            f"{tree}/include/STANDIN": STANDIN + "\n",
        },
        "links": {f"lib/modules/{release}/build": f"/{tree}"},
    }
