"""Execute tutorial notebooks in place (outputs kept) and report the time of each.

Usage: ``python tutorials/execute.py [NOTEBOOK ...] [--check-quiet]``; without names, every notebook here.
``--check-quiet`` fails when an output holds warning text (what a user would see as noise).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent
#: text that marks a warning, an engine banner, a traceback line pointing into an installed package, or a path
#: of the machine that ran the notebook (a temporary folder or a home directory)
NOISE = ("Warning:", "warnings.warn", "UserWarning", "FutureWarning", "DeprecationWarning", "GPU available", "Tip:",
         "site-packages", "/tmp/", "/home/")


def noisy_outputs(notebook) -> list[str]:
    """Output texts that look like warnings or engine banners."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"{output.get('ename')}: {output.get('evalue')}")
            text = output.get("text", "") or "".join(output.get("data", {}).get("text/plain", ""))
            found += [line for line in str(text).splitlines() if any(n in line for n in NOISE)]
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--check-quiet", action="store_true")
    parser.add_argument("--timeout", type=int, default=3600)
    args = parser.parse_args()
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    status = 0
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        nbformat.write(notebook, path)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s")
        noise = noisy_outputs(notebook)
        if args.check_quiet and noise:
            print(f"{path.name}: warning text in outputs:\n  " + "\n  ".join(noise[:10]))
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
