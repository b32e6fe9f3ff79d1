"""Runs every benchmark script in this folder, one after another.

    python bench/run_all.py            # full figures
    python bench/run_all.py --quick    # fewer iterations, where a script supports it

Each script prints ratekeeper beside its peers, with ratios, in one run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    failures = 0
    for script in sorted(here.glob("bench_*.py")):
        print(f"\n### {script.name}\n", flush=True)
        # Only scripts that know --quick get it; the others run in full.
        args = sys.argv[1:] if "--quick" in script.read_text() else []
        status = subprocess.call([sys.executable, str(script), *args], cwd=here)
        if status != 0:
            print(f"{script.name} exited with {status}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
