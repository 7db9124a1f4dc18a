"""How the operator commands print their results as text (``--json`` prints them as is)."""

from __future__ import annotations

import msgspec

from taskstream.services.cli.format import format_duration, format_time, shorten, table
from taskstream.shared import ops
from taskstream.shared.ops_models import DeadLetterPage, DlqResult, PendingList, Queues, TaskHistory
from taskstream.shared.schedule_models import PauseView


def queues_text(result: Queues) -> str:
    rows = []
    counted = False
    for q in result.queues:
        lag: object = q.lag
        if q.lag_source == "counted_capped":
            lag = f"≥{q.lag}"
        counted = counted or q.lag_source.startswith("counted")
        rows.append(
            [
                q.priority,
                q.length,
                lag,
                q.pending,
                q.consumers,
                format_duration(q.oldest_pending_age_ms),
                format_duration(q.oldest_undelivered_age_ms),
                q.retries_waiting,
                q.delayed_waiting,
                q.dead_letters,
                "paused" if q.paused else None,
            ]
        )
    headers = [
        "PRIORITY",
        "LENGTH",
        "LAG",
        "PENDING",
        "CONSUMERS",
        "OLDEST PENDING",
        "OLDEST WAITING",
        "RETRIES",
        "DELAYED",
        "DEAD",
        "PAUSED",
    ]
    notes = [
        "",
        "LAG: entries not yet delivered. OLDEST PENDING / OLDEST WAITING: time since the",
        "oldest unacknowledged / undelivered entry was added. RETRIES, DELAYED: due in Postgres.",
    ]
    if counted:
        notes.append("Redis did not report lag for some streams: counted with XRANGE.")
    if any(not q.exists for q in result.queues):
        notes.append("'-' lag: the stream or its consumer group does not exist yet.")
    for q in result.queues:
        if q.paused:
            why = f": {q.paused_note}" if q.paused_note else ""
            notes.append(f"{q.priority} is paused{why} (taskstream queues resume {q.priority}).")
    if result.paused_types:
        notes += ["", "paused task types:"]
        typed = [[t.type, t.parked, format_time(t.paused_at), t.note] for t in result.paused_types]
        notes.append(table(["TYPE", "PARKED", "SINCE", "NOTE"], typed))
    return table(headers, rows) + "\n".join(notes)


def pending_text(result: PendingList) -> str:
    if not result.entries:
        return "no pending entries"
    rows = [
        [
            e.priority,
            e.entry_id,
            e.consumer,
            format_duration(e.idle_ms),
            e.deliveries,
            str(e.task_id) if e.task_id else "(entry deleted)",
            e.type,
            e.attempt,
            f"{e.status} (stale)" if e.stale and e.status else e.status,
            format_duration(e.task_age_ms),
        ]
        for e in result.entries
    ]
    headers = [
        "PRIORITY",
        "ENTRY",
        "CONSUMER",
        "IDLE",
        "DELIVERIES",
        "TASK",
        "TYPE",
        "ATTEMPT",
        "STATUS",
        "AGE",
    ]
    return table(headers, rows)


def history_text(h: TaskHistory) -> str:
    t = h.task
    lines = [
        ("task", str(t.id)),
        ("type", t.type),
        ("priority", t.priority),
        ("status", t.status),
        ("attempt", f"{t.attempt} ({h.attempts_used} of {t.max_attempts} used)"),
        ("created", format_time(t.created_at)),
        ("queued", format_time(t.queued_at)),
        ("started", format_time(t.started_at)),
        ("finished", format_time(t.finished_at)),
    ]
    if t.result is not None:
        lines.append(("result", shorten(msgspec.json.encode(t.result).decode(), 100)))
    if t.last_error is not None:
        lines.append(("last error", shorten(f"{t.last_error.type}: {t.last_error.message}", 100)))
    if h.dead_letter is not None:
        d = h.dead_letter
        lines.append(("dead letter", f"{d.reason}, at {format_time(d.dead_at)}"))
    if h.pending is not None:
        p = h.pending
        lines.append(
            (
                "pending",
                f"entry {p.entry_id} held by {p.consumer}, idle {format_duration(p.idle_ms)}, "
                f"delivered {p.deliveries}x",
            )
        )
    width = max(len(k) for k, _ in lines)
    out = [f"{k.ljust(width)}  {v}" for k, v in lines]
    attempts = [
        [
            a.attempt,
            a.outcome,
            a.consumer,
            format_time(a.started_at),
            format_time(a.finished_at),
            shorten(f"{a.error.type}: {a.error.message}", 60) if a.error else None,
        ]
        for a in [*h.attempts, *([h.latest] if h.latest else [])]
    ]
    headers = ["ATTEMPT", "OUTCOME", "CONSUMER", "STARTED", "FINISHED", "ERROR"]
    return "\n".join([*out, "", table(headers, attempts)])


def consumers_text(result: ops.ConsumerList) -> str:
    if not result.consumers:
        return "no consumers"
    rows = [[c.priority, c.name, c.pending, format_duration(c.idle_ms)] for c in result.consumers]
    return table(["PRIORITY", "CONSUMER", "PENDING", "IDLE"], rows)


def removed_text(result: ops.RemovedConsumers) -> str:
    lines = [f"removed {len(result.removed)} consumer(s)"]
    lines += [
        f"  {c.priority}  {c.name}  idle {format_duration(c.idle_ms)}" for c in result.removed
    ]
    if result.kept_busy:
        lines.append(
            f"kept {len(result.kept_busy)} idle consumer(s) still holding pending entries "
            "(the janitor reclaims them first):"
        )
        lines += [f"  {c.priority}  {c.name}  pending {c.pending}" for c in result.kept_busy]
    return "\n".join(lines)


def dlq_text(page: DeadLetterPage) -> str:
    if not page.dead_letters:
        return "no dead letters"
    rows = [
        [
            str(d.task_id),
            d.priority,
            d.type,
            d.reason,
            d.attempts,
            format_time(d.dead_at),
            shorten(f"{d.error.type}: {d.error.message}", 60) if d.error else None,
        ]
        for d in page.dead_letters
    ]
    headers = ["TASK", "PRIORITY", "TYPE", "REASON", "ATTEMPTS", "DIED", "ERROR"]
    text = table(headers, rows)
    if page.next_cursor:
        text += f"\nmore: --cursor {page.next_cursor}"
    return text


def dlq_result_text(r: DlqResult) -> str:
    verb = {"replay": ("replay", "replayed"), "purge": ("purge", "purged")}[r.action]
    if r.dry_run:
        head = f"dry run: would {verb[0]} {r.count} dead letter(s); nothing changed"
        if r.count:
            head += f" (run again with --yes to {verb[0]} them)"
    else:
        head = f"{verb[1]} {r.count} dead letter(s)"
    lines = [head]
    if r.tasks:
        rows = [
            [str(t.task_id), t.priority, t.type, t.reason, format_time(t.dead_at)] for t in r.tasks
        ]
        lines.append(table(["TASK", "PRIORITY", "TYPE", "REASON", "DIED"], rows))
    if r.truncated:
        lines.append(f"… and {r.count - len(r.tasks)} more")
    if r.missing:
        lines.append("not in the dead letters: " + " ".join(str(i) for i in r.missing))
    return "\n".join(lines)


def pause_text(p: PauseView) -> str:
    what = f"{p.kind} {p.name}"
    if p.paused:
        head = f"paused {what}" if p.changed else f"{what} was paused already"
        return head + (f" ({p.note})" if p.note else "")
    return f"resumed {what}" if p.changed else f"{what} was not paused"
