"""OpenAI batch files through the gateway: a file of N chat rows uploaded, validated and published
as jobs, answered by one worker with an instant FakeEngine, and its output file downloaded, all
through the official openai client on one `sluice api` process. Three rounds, interleaved with
nothing else; medians and ranges. Rates: upload (bytes in, rows/s), validate + publish (create ->
in_progress, rows/s into Kafka), render (output file download, rows/s); the gateway's peak memory
(VmHWM) at two file sizes shows whether it grows with the file.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import openai
import orjson

from bench.common import kafka, topics
from gateway.keys import create_key
from sluice.broker import free_port


def _rows(n: int) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "custom_id": f"row-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "fake",
                    "messages": [{"role": "user", "content": f"question {i}"}],
                    "max_tokens": 4,
                },
            }
        )
        + b"\n"
        for i in range(n)
    )


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def one_round(bootstrap: str, n: int) -> dict[str, float]:
    base = topics(bootstrap, partitions=6)
    p = uuid.uuid4().hex[:8]
    s = base.model_copy(
        update={
            "api_keys_topic": f"bench-{p}-keys",
            "files_topic": f"bench-{p}-files",
            "file_chunks_topic": f"bench-{p}-chunks",
            "batches_topic": f"bench-{p}-batches",
        }
    )
    key, _ = create_key(s, "bench")
    port = free_port()
    env = {
        **os.environ,
        **s.child_env(),
        "SLUICE_API_GROUP_ID": f"bench-{p}-gateway",
        "SLUICE_WORKER_GROUP_ID": f"bench-{p}-workers",
        "SLUICE_WORKER_ENGINE": "fake",
        "SLUICE_WORKER_MAX_IN_FLIGHT": "4096",
        "SLUICE_WORKER_BATCH_SIZE": "1024",
    }
    with tempfile.TemporaryDirectory() as tmp:
        cli = [sys.executable, "-m", "sluice.cli", "--log-level", "WARNING"]
        api = subprocess.Popen(
            [*cli, "api", "--host", "127.0.0.1", "--port", str(port), "--store-path", f"{tmp}/s.db"], env=env
        )
        worker = subprocess.Popen([*cli, "worker"], env=env)
        try:
            _ready(port)
            data = _rows(n)
            with openai.OpenAI(
                base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=600
            ) as oai:
                t0 = time.perf_counter()
                upload = oai.files.create(file=("rows.jsonl", io.BytesIO(data)), purpose="batch")
                t1 = time.perf_counter()
                batch = oai.batches.create(
                    input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
                )
                published = None
                while batch.status not in ("completed", "failed", "expired", "cancelled"):
                    time.sleep(0.05)
                    batch = oai.batches.retrieve(batch.id)
                    if published is None and batch.status != "validating":
                        published = time.perf_counter()
                t2 = time.perf_counter()
                out = oai.files.content(str(batch.output_file_id)).read()
                t3 = time.perf_counter()
            assert batch.status == "completed" and out.count(b"\n") == n, batch.status
            return {
                "upload": n / (t1 - t0),
                "publish": n / ((published or t2) - t1),
                "completed_s": t2 - t1,
                "render": n / (t3 - t2),
                "peak_mib": _peak_kib(api.pid) / 1024,
            }
        finally:
            for proc in (api, worker):
                proc.terminate()
                proc.wait(60)


def _ready(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("sluice api did not come up")


def _cell(values: list[float], unit: str = "") -> str:
    return f"**{statistics.median(values):,.0f}**{unit} ({min(values):,.0f} to {max(values):,.0f})"


def main(n: int = 50_000, small: int = 10_000, rounds: int = 3) -> list[str]:
    with kafka() as bootstrap:
        big = [one_round(bootstrap, n) for _ in range(rounds)]
        little = [one_round(bootstrap, small) for _ in range(rounds)]
    return [
        f"| upload (files.create) | {n:,} rows | {_cell([r['upload'] for r in big])} rows/s |",
        f"| validate + publish (to in_progress) | {n:,} rows | {_cell([r['publish'] for r in big])} rows/s |",
        f"| create -> completed | {n:,} rows | {_cell([r['completed_s'] for r in big], ' s')} |",
        f"| render (output file download) | {n:,} rows | {_cell([r['render'] for r in big])} rows/s |",
        f"| gateway peak memory | {small:,} rows | {_cell([r['peak_mib'] for r in little], ' MiB')} |",
        f"| gateway peak memory | {n:,} rows | {_cell([r['peak_mib'] for r in big], ' MiB')} |",
    ]


if __name__ == "__main__":
    print("\n".join(main(*(int(a) for a in sys.argv[1:]))))
