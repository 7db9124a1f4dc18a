"""What every ingest route shares: the app's state, under typed keys. Routes import this
module, never ``app`` (which imports the routes)."""

from __future__ import annotations

from aiohttp import web

from taskstream.services.ingest.committer import GroupCommit
from taskstream.services.ingest.credentials import Authenticator
from taskstream.services.ingest.limits import Limiter
from taskstream.services.ingest.publisher import Publisher
from taskstream.services.ingest.waiters import Waiters
from taskstream.shared.config import Config
from taskstream.shared.db import Database
from taskstream.shared.metrics import Metrics
from taskstream.shared.streams import Streams

CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
DB: web.AppKey[Database] = web.AppKey("db", Database)
STREAMS: web.AppKey[Streams] = web.AppKey("streams", Streams)
PUBLISHER: web.AppKey[Publisher] = web.AppKey("publisher", Publisher)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
COMMITTER: web.AppKey[GroupCommit] = web.AppKey("committer", GroupCommit)
AUTH: web.AppKey[Authenticator] = web.AppKey("auth", Authenticator)
LIMITER: web.AppKey[Limiter] = web.AppKey("limiter", Limiter)
WAITERS: web.AppKey[Waiters] = web.AppKey("waiters", Waiters)


def config(request: web.Request) -> Config:
    return request.app[CONFIG]


def db(request: web.Request) -> Database:
    return request.app[DB]


def streams(request: web.Request) -> Streams:
    return request.app[STREAMS]


def committer(request: web.Request) -> GroupCommit:
    return request.app[COMMITTER]


def authenticator(request: web.Request) -> Authenticator:
    return request.app[AUTH]


def limiter(request: web.Request) -> Limiter:
    return request.app[LIMITER]


def waiters(request: web.Request) -> Waiters:
    return request.app[WAITERS]
