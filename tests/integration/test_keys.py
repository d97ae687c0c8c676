"""API keys end to end: `sluice keys` against the real broker, a gateway that refuses requests
without a live key (to the official openai client too), tenants apart, revocation within seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from sluice.broker import free_port
from tests.integration.conftest import Env, Procs, api_key, wait_until
from tests.integration.test_result_store import start_api


def keys_cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice.cli", "keys", *args],
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_are_created_once_listed_without_secrets_and_revoked_everywhere(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    created = keys_cli(env, "create", "--tenant", "acme", "--rpm", "600")
    assert created.returncode == 0, created.stderr
    (token,) = created.stdout.splitlines()  # the key, and nothing else, on stdout
    assert token.startswith("sk-sluice-")
    listed = keys_cli(env, "list").stdout
    assert '"tenant":"acme"' in listed and '"rpm":600' in listed and token.split(".")[1] not in listed
    bad = keys_cli(env, "create", "--tenant", "no spaces allowed")
    assert bad.returncode == 1 and "--tenant" in bad.stderr and bad.stdout == ""

    port = free_port()
    start_api(procs, env, port, tmp_path / "s.db")
    base = f"http://127.0.0.1:{port}"
    ok = httpx.post(
        f"{base}/v1/jobs", json={"model": "m", "prompt": "p"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert ok.status_code == 202
    key_id = token.removeprefix("sk-sluice-").split(".")[0]
    assert keys_cli(env, "revoke", key_id).returncode == 0
    wait_until(
        lambda: (
            httpx.get(f"{base}/v1/jobs/x", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        ),
        10,
        "the revocation to reach the running gateway",
    )


def test_the_openai_client_gets_its_own_authentication_error(env: Env, procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    start_api(procs, env, port, tmp_path / "s.db")
    wrong = "sk-sluice-000000000000.wrong-secret-000000"
    with (
        openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=wrong, max_retries=0) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.files.list()
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"


def test_tenants_see_only_their_own_jobs(env: Env, procs: Procs, tmp_path: Path) -> None:
    port = free_port()
    globex = {"Authorization": f"Bearer {api_key(env, 'globex')}"}
    acme = start_api(procs, env, port, tmp_path / "s.db")
    posted = acme.post("/v1/jobs", json={"job_id": "secret-plan", "model": "m", "prompt": "p"})
    assert posted.status_code == 202
    assert acme.get("/v1/jobs/secret-plan").json()["status"] == "pending"
    other = httpx.get(f"http://127.0.0.1:{port}/v1/jobs/secret-plan", headers=globex)
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
