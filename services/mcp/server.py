"""``taskstream mcp [--http HOST:PORT]``: the MCP server, over standard input/output by default
or the streamable HTTP transport (at ``/mcp``), calling the ingest API at ``TASKSTREAM_URL``
with ``TASKSTREAM_API_KEY``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio
from mcp.server.mcpserver import MCPServer

from taskstream import __version__
from taskstream.services.mcp import tools
from taskstream.shared import config as config_mod
from taskstream.shared.client.aio import AsyncClient
from taskstream.shared.client.models import RetryPolicy
from taskstream.shared.errors import TaskstreamError

INSTRUCTIONS = """\
taskstream runs background tasks durably: submit_task stores a task and an executor runs it
with retries; get_task follows it. queue_overview, pending_entries and list_dead_letters show
what is waiting, in flight and failed; replay_dead_letters runs failed tasks again (a dry run
unless confirm is true: show the user the count before confirming). Lists are paged with
next_cursor."""


def build(api: AsyncClient) -> MCPServer:
    """The server with every tool, calling the API through ``api``."""
    server: MCPServer = MCPServer(
        "taskstream", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
    )
    tools.register(server, api)
    return server


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def mcp_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="taskstream mcp",
        description="An MCP server for AI agents over the taskstream API (TASKSTREAM_URL, "
        "TASKSTREAM_API_KEY). Standard input/output unless --http.",
    )
    parser.add_argument(
        "--http", type=_address, metavar="HOST:PORT", help="serve streamable HTTP at /mcp"
    )
    args = parser.parse_args(list(argv))
    try:
        config = config_mod.load()
    except TaskstreamError as exc:
        print(f"taskstream mcp: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    anyio.run(_serve, config.client.api_url, config.client.api_key, args.http)
    return 0


async def _serve(url: str, api_key: str, http: tuple[str, int] | None) -> None:
    # Few retries: a model waiting on a tool is better told the API is down than kept waiting.
    api = AsyncClient(url, api_key=api_key or None, retry=RetryPolicy(retries=2))
    server = build(api)
    try:
        if http is None:
            await server.run_stdio_async()
        else:
            host, port = http
            print(f"taskstream mcp: streamable HTTP on http://{host}:{port}/mcp", file=sys.stderr)
            await server.run_streamable_http_async(host=host, port=port)
    finally:
        await api.close()
