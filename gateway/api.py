"""`sluice api`: the HTTP gateway. Every /v1 route needs an API key (gateway/auth.py).

/v1/jobs                    submit one job, read its result (gateway/jobs.py)
/v1/files                   upload, list, retrieve, download, delete files (gateway/files_api.py)
/v1/batches                 create, retrieve, cancel, list batches (gateway/batches_api.py)
GET /healthz                {"caught_up": bool, "results": n}, open to all
GET /openapi.json           the OpenAPI document of the routes above, open to all
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from aiohttp import web
from confluent_kafka import Consumer, Producer

from gateway import allocator, batches_api, files_api
from gateway.auth import KEYS, LIMITS, authenticate
from gateway.batches import BATCH_FILES, Batch, Batches, BatchFiles
from gateway.batches_api import BATCHES, DRIVER
from gateway.driver import BatchDriver
from gateway.expiry import sweep
from gateway.files import Files, open_files
from gateway.files_api import FILES
from gateway.jobs import (
    CANCELS,
    FOLLOWER,
    IN_FLIGHT,
    PRODUCER,
    SETTINGS,
    STORE,
    cancel_job,
    get_job,
    post_job,
)
from gateway.keys import ApiKeys, open_keys
from gateway.limits import RateLimits
from gateway.openapi import document
from gateway.replies import json
from producer.client import JobProducer
from sluice.cancels import Cancellations
from sluice.errors import KafkaOperationError
from sluice.kafka import consumer_config, ensure_topics, producer_config, reader_config
from sluice.loop import run as run_loop
from sluice.settings import ApiSettings, KafkaSettings, ProducerSettings
from sluice.store import ResultStore, StoreFollower
from sluice.table import Table
from sluice.topics import batch_work_topic, cancels_topic, events_topic, gateway_specs

__all__ = ["create_app", "run_api"]

log = logging.getLogger("sluice.gateway")


async def healthz(request: web.Request) -> web.Response:
    follower = request.app[FOLLOWER]
    return json(
        200 if follower.caught_up else 503,
        {"caught_up": follower.caught_up, "results": request.app[STORE].count()},
    )


async def openapi(request: web.Request) -> web.Response:
    return json(200, document())


def create_app(
    settings: ApiSettings,
    store: ResultStore,
    follower: StoreFollower,
    producer: JobProducer,
    keys: ApiKeys,
    files: Files | None = None,
    batches: tuple[Batches, BatchDriver] | None = None,
    cancels: Cancellations | None = None,
) -> web.Application:
    """The gateway's routes (the Files and Batches APIs only when given their storage)."""
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[authenticate])
    app[STORE], app[FOLLOWER], app[SETTINGS], app[PRODUCER] = store, follower, settings, producer
    app[KEYS], app[LIMITS], app[IN_FLIGHT] = keys, RateLimits(), {}
    app.router.add_post("/v1/jobs", post_job)
    app.router.add_get("/v1/jobs/{job_id}", get_job)
    if cancels is not None:
        app[CANCELS] = cancels
        app.router.add_delete("/v1/jobs/{job_id}", cancel_job)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/openapi.json", openapi)
    if files is not None:
        app[FILES] = files
        files_api.routes(app)
    if files is not None and batches is not None:
        app[BATCHES], app[DRIVER] = batches
        app[BATCH_FILES] = BatchFiles(files, store, batches[0])
        batches_api.routes(app)
    return app


async def _follow(keys: ApiKeys, files: Files, batches: Batches, stop: asyncio.Event) -> None:
    """Keys, files and batches written anywhere hold here within about a second (batches sooner:
    their owner moves them along); expired files are deleted about once a minute."""
    swept = 0.0
    while not stop.is_set():
        keys.step()
        files.table.step()
        batches.table.step()
        if time.monotonic() - swept >= 60:
            swept = time.monotonic()
            try:
                await sweep(files, batches, time.time())
            except KafkaOperationError as exc:  # the next sweep tries again
                log.warning("expired files not deleted", extra={"error": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def run_api(settings: ApiSettings) -> int:
    """Serve until SIGTERM/SIGINT."""
    allocator.tune()

    async def main() -> int:
        store = ResultStore(settings.store_path)
        follower = StoreFollower(settings, store)
        follower.start()
        ensure_topics(settings, gateway_specs(settings))
        # Every gateway topic is ensured just above; `sluice keys` writes the keys.
        keys, _ = open_keys(settings, writable=False, ensure=False)
        files = open_files(settings)
        writer = Producer(producer_config(settings))
        reader = Consumer(reader_config(settings, "sluice-batches-reader"))
        table: Table[Batch] = Table(settings.batches_topic, Batch.decode, reader, writer)
        table.start(creator="sluice api")
        batches = Batches(table)
        cancels = Cancellations(cancels_topic(settings), None, writer)  # written, never read here
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # The producer's own settings (max_lag, compression, ...) come from the environment, like
        # `sluice submit`'s; the cluster and topics are the API's.
        shared = {name: getattr(settings, name) for name in KafkaSettings.model_fields}
        # A batch publishes as fast as it reads: librdkafka's default 1 GiB local queue would let
        # the gateway's memory grow with the file while the broker catches up.
        queue: dict[str, Any] = {"queue.buffering.max.kbytes": 4 * 1024}
        producer = JobProducer(ProducerSettings(**shared), **queue)
        group = {
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        }
        work = Consumer(consumer_config(settings, settings.group_id, **group))
        driver = BatchDriver(
            batches,
            files,
            store,
            producer,
            writer,
            work,
            batch_work_topic(settings),
            settings.results_topic,
            cancels,
            events_topic(settings),
            settings.batch_cancel_grace_s,
        )
        app = create_app(settings, store, follower, producer, keys, files, (batches, driver), cancels)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info("api listening", extra={"host": settings.host, "port": settings.port})
        following = asyncio.create_task(follower.run(stop))
        watching = asyncio.create_task(_follow(keys, files, batches, stop))
        driving = asyncio.create_task(driver.run(stop))
        await stop.wait()
        await runner.cleanup()
        await asyncio.to_thread(producer.close)
        with contextlib.suppress(asyncio.CancelledError):
            await following
            await watching
            await driving
        keys.close()
        files.table.close()
        table.close()
        writer.flush(10)
        follower.close()
        store.close()
        return 0

    return run_loop(main())
