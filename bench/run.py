"""`make bench`: run every benchmark and rewrite BENCHMARKS.md with the figures and the command."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import consumers, plumbing

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    head = [
        "# Benchmarks",
        "",
        "Written by `make bench` (bench/run.py); every figure below comes from that run.",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC at commit `{commit}` on {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; the broker is the local KRaft node "
        "that the benchmark starts (same machine, so it competes for the same cores).",
        "Ratios are measured side by side in one run; absolute numbers on these shared machines are noisy.",
        "",
    ]
    sections = [
        (
            "Plumbing headroom (bench/plumbing.py)",
            "Jobs/s one worker process carries with an instant FakeEngine; each job is decoded, run, its "
            "result produced with acks=all and acknowledged, and its offset committed. Two interleaved "
            "rounds each.",
            "| setup | jobs | rounds | best |\n| --- | --- | --- | --- |",
            plumbing.main,
        ),
        (
            "Sink consumer client (bench/consumers.py)",
            "Consume and decode the same result records (6 partitions) with each client, in turn.",
            "| client | records | rate |\n| --- | --- | --- |",
            consumers.main,
        ),
    ]
    body: list[str] = []
    for title, text, table_head, fn in sections:
        print(f"running: {title}", flush=True)
        rows = fn()
        body += [f"## {title}", "", text, "", table_head, *rows, ""]
        print("\n".join(rows), flush=True)
    (ROOT / "BENCHMARKS.md").write_text("\n".join(head + body))
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
