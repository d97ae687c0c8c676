"""The gateway's OpenAPI document, served at GET /openapi.json (open, like /healthz): what a client
generator or a property-based API tester (tests use schemathesis) reads."""

from __future__ import annotations

from typing import Any

from gateway.rows import ENDPOINTS

__all__ = ["document"]

_ERROR = {
    "description": "an error in OpenAI's shape",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_JSON_OK = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}


def _op(summary: str, ok: str = "200", **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": {ok: _JSON_OK, "4XX": _ERROR}, **extra}


def _id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _body(schema: dict[str, Any], kind: str = "application/json") -> dict[str, Any]:
    return {"required": True, "content": {kind: {"schema": schema}}}


def document() -> dict[str, Any]:
    paging = [_query("after", {"type": "string"}), _query("limit", {"type": "integer"})]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Sluice gateway", "version": "1"},
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {"type": "string", "nullable": True},
                                "code": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
        "paths": {
            "/v1/jobs": {"post": _op("submit a job", "202", requestBody=_body({"type": "object"}))},
            "/v1/jobs/{job_id}": {
                "parameters": [_id("job_id")],
                "get": _op("a job's result", parameters=[_query("wait", {"type": "number"})]),
                "delete": _op("cancel a job", "202"),
            },
            "/v1/files": {
                "post": _op(
                    "upload a file",
                    requestBody=_body(
                        {
                            "type": "object",
                            "required": ["file", "purpose"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "purpose": {"type": "string"},
                            },
                        },
                        "multipart/form-data",
                    ),
                ),
                "get": _op(
                    "list files",
                    parameters=[
                        *paging,
                        _query("order", {"type": "string", "enum": ["asc", "desc"]}),
                        _query("purpose", {"type": "string"}),
                    ],
                ),
            },
            "/v1/files/{file_id}": {
                "parameters": [_id("file_id")],
                "get": _op("a file"),
                "delete": _op("delete a file"),
            },
            "/v1/files/{file_id}/content": {"parameters": [_id("file_id")], "get": _op("a file's bytes")},
            "/v1/batches": {
                "post": _op(
                    "create a batch",
                    requestBody=_body(
                        {
                            "type": "object",
                            "required": ["input_file_id", "endpoint", "completion_window"],
                            "properties": {
                                "input_file_id": {"type": "string"},
                                "endpoint": {"type": "string", "enum": list(ENDPOINTS)},
                                "completion_window": {"type": "string"},
                                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                        }
                    ),
                ),
                "get": _op("list batches", parameters=paging),
            },
            "/v1/batches/{batch_id}": {"parameters": [_id("batch_id")], "get": _op("a batch")},
            "/v1/batches/{batch_id}/cancel": {"parameters": [_id("batch_id")], "post": _op("cancel a batch")},
        },
    }
