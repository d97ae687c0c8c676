"""A downstream service reading inference-results directly, with confluent-kafka.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 python examples/subscribe_confluent.py --group billing

Results are keyed by job id and the topic is compacted: a consumer group of your own gets every
result at least once (commit after handling; handle a job id twice harmlessly). A new group with
auto.offset.reset=earliest replays the latest result of every job still in the topic.
"""

from __future__ import annotations

import argparse
import os

from confluent_kafka import Consumer

from sluice.contract import decode_result
from sluice.errors import ContractError


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", default="my-service")
    ap.add_argument("--topic", default=os.environ.get("SLUICE_RESULTS_TOPIC", "inference-results"))
    ap.add_argument("--max", type=int, default=0, help="stop after this many results (0: run forever)")
    args = ap.parse_args()
    consumer = Consumer(
        {
            "bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",  # matters once workers run in exactly-once mode
        }
    )
    consumer.subscribe([args.topic])
    handled = 0
    try:
        while not args.max or handled < args.max:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            try:
                result = decode_result(msg.value())
            except ContractError as exc:  # a newer schema version, say: skip it, loudly
                print(f"skipping undecodable record at offset {msg.offset()}: {exc}")
                continue
            print(f"{result.job_id} {result.status} {result.output_tokens} tokens", flush=True)
            consumer.commit(msg, asynchronous=False)  # after handling: at-least-once
            handled += 1
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
