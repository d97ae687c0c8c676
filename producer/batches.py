"""A client of the gateway's Batches API for teams without the openai client (`sluice batch ...`):
upload a file and create a batch, follow it with a progress bar, cancel it, download its files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from sluice.errors import ConfigError, SluiceError

__all__ = ["BatchClient", "GatewayError"]

ENDED = ("completed", "failed", "expired", "cancelled")


class GatewayError(SluiceError):
    """The gateway refused a request; the message is its own (OpenAI's error shape)."""

    code = "gateway_error"


class BatchClient:
    """The Batches API of one gateway, as one tenant (its API key)."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 60.0) -> None:
        if not api_key:
            raise ConfigError("SLUICE_API_KEY (or --api-key): a key from `sluice keys create` is needed")
        headers = {"Authorization": f"Bearer {api_key}"}
        self.http = httpx.Client(base_url=base_url.rstrip("/") + "/v1", headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self.http.close()

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        body: dict[str, Any] = response.json()
        if response.status_code >= 400:
            error = body.get("error") or {}
            raise GatewayError(f"{response.status_code} {error.get('code')}: {error.get('message')}")
        return body

    def submit(self, path: Path, endpoint: str, window: str = "24h") -> dict[str, Any]:
        """Upload `path` (streamed) and create a batch of it."""
        with path.open("rb") as fh:
            upload = self._json(
                self.http.post("/files", files={"file": (path.name, fh)}, data={"purpose": "batch"})
            )
        body = {"input_file_id": upload["id"], "endpoint": endpoint, "completion_window": window}
        return self._json(self.http.post("/batches", json=body))

    def status(self, batch_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"/batches/{batch_id}"))

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return self._json(self.http.post(f"/batches/{batch_id}/cancel"))

    def wait(self, batch_id: str, progress: bool = True, poll_s: float = 1.0) -> dict[str, Any]:
        """Follow the batch until it ends, with a bar of its answered rows."""
        with tqdm(desc=batch_id, unit="row", disable=not progress) as bar:
            while True:
                batch = self.status(batch_id)
                counts = batch.get("request_counts") or {}
                bar.total = counts.get("total") or None
                bar.n = counts.get("completed", 0) + counts.get("failed", 0)
                bar.set_postfix_str(batch["status"])
                bar.refresh()
                if batch["status"] in ENDED:
                    return batch
                time.sleep(poll_s)

    def download(self, batch_id: str, out: Path, errors: Path) -> tuple[int, int]:
        """Write the batch's output and error files (streamed); their sizes in bytes."""
        batch = self.status(batch_id)
        sizes = []
        for file_id, path in ((batch.get("output_file_id"), out), (batch.get("error_file_id"), errors)):
            size = 0
            with path.open("wb") as fh:
                if file_id:
                    with self.http.stream("GET", f"/files/{file_id}/content") as response:
                        if response.status_code >= 400:
                            response.read()
                            self._json(response)
                        for chunk in response.iter_bytes():
                            size += fh.write(chunk)
            sizes.append(size)
        return sizes[0], sizes[1]
