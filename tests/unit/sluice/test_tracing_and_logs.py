from __future__ import annotations

import io
import logging
import os
import threading

import orjson
import pytest
from pydantic import SecretStr

from sluice.logs import JOBS_PER_LINE, JobLog, configure_logging
from sluice.settings import SinkSettings, WorkerSettings
from sluice.tracing import child_traceparent, ensure_traceparent, is_valid, new_traceparent, trace_id


def test_traceparent_is_kept_when_valid_and_replaced_when_not() -> None:
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert ensure_traceparent(tp) == tp
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01", tp.upper()):
        fresh = ensure_traceparent(bad)
        assert is_valid(fresh) and fresh != bad


def test_child_keeps_the_trace_and_changes_the_span() -> None:
    parent = new_traceparent()
    child = child_traceparent(parent)
    assert is_valid(child)
    assert trace_id(child) == trace_id(parent)
    assert child != parent


def test_logs_are_json_lines_with_job_fields() -> None:
    out = io.StringIO()
    listener = configure_logging("test-svc", "INFO", stream=out)
    try:
        logging.getLogger("sluice.x").info("job %s done", "j1", extra={"job_id": "j1", "traceparent": "00-a"})
        logging.getLogger("sluice.x").debug("hidden")
    finally:
        listener.stop()
        logging.getLogger().handlers.clear()
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 1
    entry = lines[0]
    assert entry["msg"] == "job j1 done"
    assert entry["service"] == "test-svc"
    assert entry["job_id"] == "j1" and entry["traceparent"] == "00-a"
    assert entry["level"] == "info"


def test_a_library_handler_that_prints_the_process_id_still_formats() -> None:
    """vLLM's own handler prints "pid=%(process)d": every vLLM line in a worker failed with a
    "Logging error" traceback while configure_logging switched the process id off."""
    listener = configure_logging("test-svc", "INFO", stream=io.StringIO())
    try:
        record = logging.getLogger("vllm").makeRecord(
            "vllm", logging.INFO, __file__, 1, "len %s", (256,), None
        )
    finally:
        listener.stop()
        logging.getLogger().handlers.clear()
    assert logging.Formatter("(pid=%(process)d) %(message)s").format(record) == f"(pid={os.getpid()}) len 256"


FIELDS = ("job_id", "status")


def test_job_lines_are_columnar_batched_to_the_writer_and_keep_order() -> None:
    out = io.StringIO()
    listener = configure_logging("test-svc", "INFO", stream=out)
    try:
        jobs = JobLog("sluice.worker.jobs", "jobs done", FIELDS)
        assert jobs.enabled
        ids, statuses = jobs.columns
        ids += ["j1", "j2"]
        statuses += ["succeeded", "failed"]
        logging.getLogger("sluice.x").info("between")
        jobs.flush()
        assert len(jobs) == 2  # too few and too soon: kept for the next turn
        jobs.flush(force=True)
        assert jobs.columns == ([], [])  # emptied in place: the loop's bound appends stay valid
        assert ids is jobs.columns[0]
        jobs.flush(force=True)  # nothing left: writes nothing
        ids += [f"k{i}" for i in range(JOBS_PER_LINE + 1)]
        statuses += ["succeeded"] * (JOBS_PER_LINE + 1)
        jobs.flush(force=True)
    finally:
        listener.stop()
        logging.getLogger().handlers.clear()
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["msg"], e.get("n")) for e in lines] == [
        ("between", None),
        ("jobs done", 2),
        ("jobs done", JOBS_PER_LINE),
        ("jobs done", 1),
    ]
    assert lines[1]["job_id"] == ["j1", "j2"] and lines[1]["status"] == ["succeeded", "failed"]
    assert lines[1]["logger"] == "sluice.worker.jobs" and lines[1]["service"] == "test-svc"
    assert lines[2]["job_id"] + lines[3]["job_id"] == [f"k{i}" for i in range(JOBS_PER_LINE + 1)]


def test_job_lines_without_the_writer_are_ordinary_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sluice.worker.jobs")
    jobs = JobLog("sluice.worker.jobs", "jobs done", FIELDS)
    jobs.columns[0].append("j1")
    jobs.columns[1].append("succeeded")
    jobs.flush(force=True)
    assert [(r.getMessage(), r.n, r.job_id, r.status) for r in caplog.records] == [  # type: ignore[attr-defined]
        ("jobs done", 1, ["j1"], ["succeeded"])
    ]


def test_job_lines_are_off_below_info() -> None:
    logging.getLogger("sluice.quiet").setLevel(logging.WARNING)
    try:
        assert not JobLog("sluice.quiet", "jobs done", FIELDS).enabled
    finally:
        logging.getLogger("sluice.quiet").setLevel(logging.NOTSET)


def test_logging_never_waits_for_the_writer() -> None:
    release = threading.Event()

    class Blocked(io.StringIO):
        def write(self, s: str) -> int:
            release.wait()
            return super().write(s)

    stream = Blocked()
    listener = configure_logging("test-svc", "INFO", stream=stream)
    # If logging wrote in the caller's thread, the first call would block until this timer fires,
    # and the writes would already be there when we look below.
    safety = threading.Timer(5.0, release.set)
    safety.start()
    try:
        for i in range(20):
            logging.getLogger("sluice.x").info("line %d", i)
        written_while_blocked = stream.getvalue()
        release.set()
    finally:
        listener.stop()
        safety.cancel()
        logging.getLogger().handlers.clear()
    assert written_while_blocked == ""
    assert len(stream.getvalue().splitlines()) == 20


def test_settings_read_environment_and_hide_secrets(monkeypatch: object) -> None:
    mp = monkeypatch
    mp.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092")  # type: ignore[attr-defined]
    mp.setenv("SLUICE_JOBS_TOPIC", "my-jobs")  # type: ignore[attr-defined]
    mp.setenv("SLUICE_WORKER_BATCH_SIZE", "17")  # type: ignore[attr-defined]
    mp.setenv("SLUICE_SINK_WEBHOOK_SECRETS", "hunter2 whsec_b2xkLXNlY3JldA==")  # type: ignore[attr-defined]
    mp.setenv("SLUICE_WEBHOOK_ALLOWLIST", "10.0.0.0/8, hooks.internal")  # type: ignore[attr-defined]
    mp.setenv("SLUICE_SASL_PASSWORD", "pw-secret")  # type: ignore[attr-defined]
    w = WorkerSettings()
    assert (w.bootstrap_servers, w.jobs_topic, w.batch_size) == ("k1:9092", "my-jobs", 17)
    s = SinkSettings()
    assert [k.get_secret_value() for k in s.webhook_secrets] == ["hunter2", "whsec_b2xkLXNlY3JldA=="]
    assert s.webhook_allowlist == ["10.0.0.0/8", "hooks.internal"]
    assert "hunter2" not in repr(s) and "pw-secret" not in repr(s) and "b2xk" not in repr(s)
    assert s.client_config()["sasl.password"] == "pw-secret"


def test_kafka_security_settings_reach_every_client_config() -> None:
    from sluice.kafka import consumer_config, producer_config

    s = WorkerSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SecretStr("pw-secret"),
        ssl_ca_location="/etc/ca.pem",
    )
    wanted = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "pw-secret",
        "ssl.ca.location": "/etc/ca.pem",
    }
    for conf in (s.client_config(), producer_config(s), consumer_config(s, "g")):
        assert {k: conf.get(k) for k in wanted} == wanted
    assert "pw-secret" not in repr(s) and "pw-secret" not in str(s.model_dump())
