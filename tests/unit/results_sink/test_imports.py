"""What a downstream receiver imports to verify webhooks stays cheap: no Kafka client, no HTTP
server stack, no metrics, no pydantic."""

from __future__ import annotations

import subprocess
import sys


def test_importing_signing_loads_neither_kafka_nor_the_sink() -> None:
    code = (
        "import sys\n"
        "from results_sink.signing import verify\n"
        "heavy = ['confluent_kafka', 'aiohttp', 'prometheus_client', 'pydantic', 'results_sink.sink']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""


def test_the_sink_names_still_resolve_on_first_use() -> None:
    import results_sink

    assert results_sink.run_sink.__module__ == "results_sink.sink"
    assert results_sink.start_receiver.__module__ == "results_sink.receiver"
