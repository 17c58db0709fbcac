"""``ats deadletters``: a client of the API's dead-letter routes (``/v1/deadletters``, admin scope).

The command goes through the API rather than to Kafka itself, so a redrive from an operator's machine
takes the one path every event takes (validation, keying, ``ats-redrive-of`` provenance) under an admin
token, and needs no broker credentials; only the API reads ``inventory.dead-letter``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click


class ApiError(click.ClickException):
    """The API answered with a problem (or not at all); the message is its detail."""


class DeadLetterClient:
    def __init__(self, api_url: str, token: str, *, timeout: float = 60.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def list(self, query: list[tuple[str, str]]) -> dict[str, Any]:
        return self._call("GET", "/v1/deadletters" + ("?" + urllib.parse.urlencode(query) if query else ""))

    def show(self, dead_letter_id: str) -> dict[str, Any]:
        return self._call("GET", "/v1/deadletters/" + urllib.parse.quote(dead_letter_id, safe=""))

    def redrive(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/deadletters/redrive", body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers={  # noqa: S310
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) URL
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{method} {path}: {exc.code} {_detail(exc.read())}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(f"the API at {self.api_url} does not answer: {exc}") from None


def _detail(raw: bytes) -> str:
    try:
        problem = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:500]
    return str(problem.get("detail", problem)) if isinstance(problem, dict) else str(problem)


def render_page(page: dict[str, Any]) -> list[str]:
    """A page as a table: id, when, reason, where the original came from, detail."""
    lines = [f"{'id':<10} {'dead_lettered_at':<24} {'reason':<22} {'origin':<32} detail"]
    for item in page["items"]:
        origin = f"{item['topic']}[{item['partition']}]@{item['offset']}" if item["topic"] else "-"
        lines.append(f"{item['id']:<10} {item['dead_lettered_at']:<24} {item['reason']:<22} {origin:<32} "
                     f"{_one_line(item['detail'], 100)}")
    shown = f"{len(page['items'])} dead letter(s), {page['scanned']} record(s) read"
    lines.append(shown + (f"; older: --cursor {page['next_cursor']}" if page["next_cursor"] else "; no older ones"))
    return lines


def render_letter(item: dict[str, Any]) -> list[str]:
    return [f"id                {item['id']}",
            f"dead_lettered_at  {item['dead_lettered_at']}",
            f"reason            {item['reason']}",
            f"detail            {item['detail']}",
            f"origin            {item['topic']} partition {item['partition']} offset {item['offset']}",
            "payload", item["payload"] if item["payload"] is not None else "(none)"]


def render_report(report: dict[str, Any]) -> list[str]:
    """One line per record: accepted (where it went), rejected again (reason: detail), or not found."""
    lines = []
    for item in report["items"]:
        if item["status"] == "accepted":
            verb = "would be produced" if report["dry_run"] else "produced"
            fixed = " (corrected)" if item["corrected"] else ""
            lines.append(f"{item['id']:<10} accepted{fixed}: {item['event_id']} {verb} to {item['produced_to']}")
        elif item["status"] == "rejected":
            rejection = item["rejection"]
            lines.append(f"{item['id']:<10} rejected again: {rejection['reason']}: "
                         f"{_one_line(rejection['detail'], 120)}")
        else:
            lines.append(f"{item['id']:<10} not found in the dead-letter topic")
    summary = report["summary"]
    done = "dry run, nothing produced" if report["dry_run"] else "done"
    lines.append(f"{done}: {summary['accepted']} accepted, {summary['rejected']} rejected, "
                 f"{summary['not_found']} not found")
    if report["next_cursor"]:
        lines.append(f"more records match: --cursor {report['next_cursor']}")
    return lines


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
