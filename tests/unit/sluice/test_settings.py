"""Settings from the environment: every list takes words or JSON alike, and every invalid value is
one line naming its variable, for every settings class."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic_settings import BaseSettings

from sluice.errors import ConfigError
from sluice.settings import (
    ApiSettings,
    CliSettings,
    KafkaSettings,
    ProducerSettings,
    SinkSettings,
    WorkerSettings,
    load,
)

CLASSES: list[type[BaseSettings]] = [
    KafkaSettings,
    ProducerSettings,
    WorkerSettings,
    ApiSettings,
    SinkSettings,
]

# (variable, class, field): every list setting.
LISTS = [
    ("SLUICE_WEBHOOK_ALLOWLIST", KafkaSettings, "webhook_allowlist"),
    ("SLUICE_WORKER_SERVED_MODEL_NAMES", WorkerSettings, "served_model_names"),
]


@pytest.mark.parametrize(("variable", "cls", "name"), LISTS)
@pytest.mark.parametrize("text", ["a,b", "a b", " a, b ", '["a", "b"]'])
def test_list_settings_take_words_or_json(
    variable: str, cls: type[BaseSettings], name: str, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, text)
    assert getattr(load(cls), name) == ["a", "b"]


def test_a_single_bare_word_is_a_one_element_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_WORKER_SERVED_MODEL_NAMES", "bench")
    assert load(WorkerSettings).served_model_names == ["bench"]


def test_sink_lists_take_words_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_SINK_RETRY_SCHEDULE", "0, 5 30")
    monkeypatch.setenv("SLUICE_SINK_WEBHOOK_SECRETS", '["whsec_a", "whsec_b"]')
    s = load(SinkSettings)
    assert s.retry_schedule == [0.0, 5.0, 30.0]
    assert [x.get_secret_value() for x in s.webhook_secrets] == ["whsec_a", "whsec_b"]


def test_mappings_take_json_or_name_value_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SLUICE_WORKER_ENGINE_ARGS", "max_num_batched_tokens=8192, enable_prefix_caching=false"
    )
    monkeypatch.setenv("SLUICE_WORKER_LORA_MODULES", '{"sql": "/loras/sql"}')
    monkeypatch.setenv("SLUICE_CLIENT_OVERRIDES", "socket.keepalive.enable=true")
    s = load(WorkerSettings)
    assert s.engine_args == {"max_num_batched_tokens": 8192, "enable_prefix_caching": False}
    assert s.lora_modules == {"sql": "/loras/sql"}
    assert s.client_overrides == {"socket.keepalive.enable": True}


def assert_one_line(
    cls: type[BaseSettings], variable: str, value: str, expects: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`variable=value` makes loading `cls` fail with one line that starts with the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load(cls)
    message = str(caught.value)
    # SLUICE_X=value: ..., or SLUICE_X.0.url: ... for a field inside it
    assert message.startswith((f"{variable}=", f"{variable}.")) and expects in message and "\n" not in message


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("variable", "value", "expects"),
    [
        ("SLUICE_JOBS_PARTITIONS", "many", "valid integer"),
        ("SLUICE_REPLICATION_FACTOR", "0", "greater than or equal to 1"),
        ("SLUICE_SECURITY_PROTOCOL", "TLS", "PLAINTEXT"),
        ("SLUICE_CLIENT_OVERRIDES", "{not json", "JSON object"),
        ("SLUICE_WEBHOOK_ALLOWLIST", "[1, 2", "JSON array"),
        ("SLUICE_GROUP_PROTOCOL", "kip848", "'classic' or 'consumer'"),
    ],
)
def test_an_invalid_shared_setting_names_its_variable_in_every_class(
    cls: type[BaseSettings], variable: str, value: str, expects: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_one_line(cls, variable, value, expects, monkeypatch)


@pytest.mark.parametrize(
    ("cls", "variable", "value", "expects"),
    [
        (ProducerSettings, "SLUICE_MAX_LAG", "-1", "greater than or equal to 0"),
        (ProducerSettings, "SLUICE_LINGER_MS", "soon", "valid integer"),
        (WorkerSettings, "SLUICE_WORKER_BATCH_SIZE", "abc", "valid integer"),
        (WorkerSettings, "SLUICE_WORKER_ENGINE", "tgi", "'fake' or 'vllm'"),
        (WorkerSettings, "SLUICE_WORKER_VLLM_DRIVER", "threads", "'async' or 'thread'"),
        # Above the broker's transaction.max.timeout.ms default: init_transactions would refuse it.
        (WorkerSettings, "SLUICE_WORKER_TRANSACTION_TIMEOUT_MS", "3600000", "less than or equal to 900000"),
        (WorkerSettings, "SLUICE_WORKER_ENGINE_ARGS", "foo", "name=value pairs"),
        (WorkerSettings, "SLUICE_WORKER_LORA_MODULES", "[1]", "JSON object"),
        (ApiSettings, "SLUICE_API_PORT", "70000", "less than or equal to 65535"),
        (CliSettings, "SLUICE_LOG_LEVEL", "loud", "'DEBUG', 'INFO'"),
        (SinkSettings, "SLUICE_SINK_RETRY_SCHEDULE", "-1", "none negative"),
        (SinkSettings, "SLUICE_SINK_SUBSCRIPTIONS", "everything", "JSON array of objects"),
        (SinkSettings, "SLUICE_SINK_SUBSCRIPTIONS", '[{"id": "a"}]', "Field required"),
    ],
)
def test_an_invalid_service_setting_names_its_variable(
    cls: type[BaseSettings], variable: str, value: str, expects: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_one_line(cls, variable, value, expects, monkeypatch)


def test_secrets_are_never_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_SINK_WEBHOOK_SECRETS", '["whsec_topsecret", 5, [1]]')
    with pytest.raises(ConfigError) as caught:
        load(SinkSettings)
    assert "SLUICE_SINK_WEBHOOK_SECRETS" in str(caught.value) and "topsecret" not in str(caught.value)


def test_the_cli_prints_one_line_and_no_traceback() -> None:
    env = {"SLUICE_WORKER_SERVED_MODEL_NAMES": "[bench", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "sluice.cli", "worker"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error (config_error): SLUICE_WORKER_SERVED_MODEL_NAMES=[bench: expected")


def test_producer_settings_are_defined_once_for_every_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_COMPRESSION_TYPE", "zstd")
    monkeypatch.setenv("SLUICE_LINGER_MS", "20")
    for cls in (KafkaSettings, ProducerSettings, WorkerSettings, ApiSettings, SinkSettings):
        s = load(cls)
        assert (s.compression_type, s.linger_ms) == ("zstd", 20), cls.__name__


def test_engine_settings_become_vllm_arguments_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_WORKER_MODEL", "/models/m")
    monkeypatch.setenv("SLUICE_WORKER_MAX_NUM_SEQS", "64")
    monkeypatch.setenv("SLUICE_WORKER_ENGINE_ARGS", "enable_prefix_caching=false")
    args = load(WorkerSettings).vllm_args()
    assert args["model"] == "/models/m" and args["served_model_name"] == ["/models/m"]
    assert args["max_num_seqs"] == 64 and args["enable_prefix_caching"] is False
    assert args["enable_lora"] is False


def test_the_log_level_reads_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_LOG_LEVEL", "debug")
    assert load(CliSettings).log_level == "DEBUG"


def test_the_thread_driver_is_the_default_and_data_parallel_gets_async(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load(WorkerSettings).vllm_driver == "thread"
    monkeypatch.setenv("SLUICE_WORKER_ENGINE_ARGS", "data_parallel_size=2")
    # vLLM balances several data-parallel engines only behind AsyncLLM.
    assert load(WorkerSettings).vllm_driver == "async"
    monkeypatch.setenv("SLUICE_WORKER_VLLM_DRIVER", "thread")
    with pytest.raises(ConfigError) as caught:
        load(WorkerSettings)
    message = str(caught.value)
    assert message.startswith("SLUICE_WORKER_VLLM_DRIVER=thread") and "data_parallel_size=2" in message
    assert "SLUICE_WORKER_VLLM_DRIVER=async" in message and "\n" not in message


@pytest.mark.parametrize(
    ("cls", "prefix"),
    [(WorkerSettings, "SLUICE_WORKER_"), (ApiSettings, "SLUICE_API_"), (SinkSettings, "SLUICE_SINK_")],
)
@pytest.mark.parametrize("name", ["SESSION_TIMEOUT_MS", "HEARTBEAT_INTERVAL_MS"])
def test_a_group_timeout_is_refused_on_the_consumer_protocol(
    cls: type[BaseSettings], prefix: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{prefix}{name}", "6000")
    load(cls)  # the classic protocol (the default) sends it
    monkeypatch.setenv("SLUICE_GROUP_PROTOCOL", "consumer")
    with pytest.raises(ConfigError) as caught:
        load(cls)
    message = str(caught.value)
    assert message.startswith(f"{prefix}{name}: not used with SLUICE_GROUP_PROTOCOL=consumer"), message
    assert f"group.consumer.{name.lower().replace('_', '.')}" in message and "\n" not in message
