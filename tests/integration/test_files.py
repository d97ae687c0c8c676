"""The Files API through the official openai client, unchanged, against a gateway on the real
broker: upload, retrieve, download (several chunks), list page by page, delete; tenants apart;
a file uploaded through one gateway replica is served by another."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from sluice.broker import free_port
from tests.integration.conftest import Env, Procs, api_key
from tests.integration.test_result_store import start_api


def client(port: int, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)


def test_files_round_trip_through_the_openai_client(env: Env, procs: Procs, tmp_path: Path) -> None:
    key, other_key = api_key(env), api_key(env, "globex")
    port = free_port()
    start_api(procs, env, port, tmp_path / "a.db")
    big = tmp_path / "big.jsonl"
    big.write_bytes(os.urandom(1_300_000))  # three chunks, the last one short
    with client(port, key) as oai, client(port, other_key) as other:
        with big.open("rb") as upload:
            uploaded = oai.files.create(file=upload, purpose="batch")
        assert (uploaded.object, uploaded.purpose, uploaded.bytes, uploaded.filename) == (
            "file",
            "batch",
            1_300_000,
            "big.jsonl",
        )
        assert uploaded.id.startswith("file-") and uploaded.status == "processed" and uploaded.created_at > 0
        assert oai.files.retrieve(uploaded.id) == uploaded
        assert oai.files.content(uploaded.id).read() == big.read_bytes()

        with pytest.raises(openai.NotFoundError):
            other.files.retrieve(uploaded.id)  # another tenant's file does not exist for them
        assert other.files.list().data == []

        assert uploaded.expires_at is None  # kept until deleted unless asked otherwise
        expiring = oai.files.create(
            file=("e.jsonl", b"{}\n"),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 3600},
        )
        assert expiring.expires_at == expiring.created_at + 3600
        assert oai.files.retrieve(expiring.id).expires_at == expiring.expires_at
        oai.files.delete(expiring.id)

        small = [oai.files.create(file=(f"f{i}.jsonl", b"{}\n"), purpose="batch") for i in range(4)]
        first = oai.files.list(limit=2)
        assert len(first.data) == 2 and first.has_more is True
        every = [f.id for f in oai.files.list(limit=2, order="asc")]  # auto-paging over three pages
        assert every == [uploaded.id, *(f.id for f in small)]
        with pytest.raises(openai.BadRequestError) as caught:
            oai.files.list(limit=0)
        assert caught.value.code == "invalid_limit"

        deleted = oai.files.delete(small[0].id)
        assert (deleted.id, deleted.deleted) == (small[0].id, True)
        with pytest.raises(openai.NotFoundError):
            oai.files.retrieve(small[0].id)

        # A second replica serves the files the first one stored.
        second = free_port()
        start_api(procs, env, second, tmp_path / "b.db")
        with client(second, key) as replica:
            assert replica.files.content(uploaded.id).read() == big.read_bytes()
            assert {f.id for f in replica.files.list()} == {uploaded.id, *(f.id for f in small[1:])}


def test_an_upload_with_a_wrong_purpose_or_expiry_is_refused_and_not_kept(
    env: Env, procs: Procs, tmp_path: Path
) -> None:
    key = api_key(env)
    port = free_port()
    start_api(procs, env, port, tmp_path / "a.db")
    with client(port, key) as oai:
        with pytest.raises(openai.BadRequestError) as caught:
            oai.files.create(file=("x.txt", b"hello"), purpose="fine-tune")
        assert caught.value.param == "purpose"
        wrong: list[tuple[Any, str]] = [
            ({"anchor": "last_active_at", "seconds": 3600}, "expires_after.anchor"),
            ({"anchor": "created_at", "seconds": 60}, "expires_after.seconds"),  # under OpenAI's hour
            ({"anchor": "created_at", "seconds": 31 * 24 * 3600}, "expires_after.seconds"),
        ]
        for expires_after, param in wrong:
            with pytest.raises(openai.BadRequestError) as caught:
                oai.files.create(file=("x.jsonl", b"{}\n"), purpose="batch", expires_after=expires_after)
            assert (caught.value.code, caught.value.param) == ("invalid_expires_after", param)
        assert oai.files.list().data == []
    no_file = httpx.post(
        f"http://127.0.0.1:{port}/v1/files",
        files={"purpose": (None, "batch")},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert no_file.status_code == 400 and no_file.json()["error"]["param"] == "file"
