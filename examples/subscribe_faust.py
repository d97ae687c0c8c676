"""A downstream service reading inference-results with faust-streaming.

    pip install 'sluice[faust]'    # faust-streaming + cramjam (workers compress with lz4)
    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python examples/subscribe_faust.py worker -l info

Values are taken raw and decoded with Sluice's contract, so a field the worker adds later does not
break the agent. faust commits offsets as the agent finishes each event (at-least-once).
"""

from __future__ import annotations

import os

import faust

from sluice.contract import decode_result

MAX = int(os.environ.get("EXAMPLE_MAX_RESULTS", "0"))  # stop after this many (0: run forever)

app = faust.App(
    os.environ.get("EXAMPLE_GROUP", "my-faust-service"),
    broker="kafka://" + os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
    web_enabled=False,
    store="memory://",
)
results = app.topic(os.environ.get("SLUICE_RESULTS_TOPIC", "inference-results"), value_serializer="raw")
handled = 0


@app.agent(results)
async def handle(stream: faust.StreamT[bytes]) -> None:
    global handled
    async for value in stream:
        result = decode_result(value)
        print(f"{result.job_id} {result.status} {result.output_tokens} tokens", flush=True)
        handled += 1
        if MAX and handled >= MAX:
            os._exit(0)


if __name__ == "__main__":
    app.main()
