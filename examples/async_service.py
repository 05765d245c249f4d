"""An asyncio service that records events in JSON files through atomicjson.

atomicjson's calls block (on the lock, the write, the fsyncs), so an asyncio service runs them
in worker threads with :func:`asyncio.to_thread`; the Rust core releases the GIL while it
waits and writes, so the event loop keeps serving meanwhile. Threads of one process that
update the same file are serialized by the lock just like separate processes.

The service here: clients send events; a handler appends each one to a per-client file with
``write_json`` and bumps shared counters in ``stats.json`` with ``update_json``. A heartbeat
task measures how long the event loop is ever blocked.

    python examples/async_service.py

``atomicjson.aio`` offers the same calls as coroutines (with each task its own lock owner);
this example shows the plain ``asyncio.to_thread`` route, which works with any callable.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import atomicjson

CLIENTS = 8
EVENTS_PER_CLIENT = 25


def _count(stats: Dict[str, Any], client: str, kind: str) -> Dict[str, Any]:
    stats["total"] = stats.get("total", 0) + 1
    per_client = stats.setdefault("clients", {})
    per_client[client] = per_client.get(client, 0) + 1
    by_kind = stats.setdefault("kinds", {})
    by_kind[kind] = by_kind.get(kind, 0) + 1
    return stats


class EventService:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.stats_path = root / "stats.json"
        self.history: Dict[str, List[Dict[str, Any]]] = {}

    async def handle(self, client: str, event: Dict[str, Any]) -> None:
        history = self.history.setdefault(client, [])
        history.append(event)
        # A snapshot of this client's events; list(...) because the thread writes later.
        await asyncio.to_thread(atomicjson.write_json, self.root / "clients" / f"{client}.json",
                                {"client": client, "events": list(history)}, durable=False)
        # The shared counters: a locked read-modify-write, many of them in flight at once.
        await asyncio.to_thread(atomicjson.update_json, self.stats_path,
                                lambda stats: _count(stats, client, event["kind"]),
                                default={})

    async def stats(self) -> Any:
        return await asyncio.to_thread(atomicjson.read_json, self.stats_path)


async def client(service: EventService, name: str) -> None:
    for i in range(EVENTS_PER_CLIENT):
        await service.handle(name, {"seq": i, "kind": "click" if i % 3 else "view",
                                    "at": time.time()})


async def heartbeat(stop: asyncio.Event, gaps: List[float]) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def main(root: Path) -> int:
    service = EventService(root)
    stop = asyncio.Event()
    gaps: List[float] = []
    beat = asyncio.create_task(heartbeat(stop, gaps))
    start = time.perf_counter()
    await asyncio.gather(*(client(service, f"client{c}") for c in range(CLIENTS)))
    elapsed = time.perf_counter() - start
    stop.set()
    await beat

    stats = await service.stats()
    expected = CLIENTS * EVENTS_PER_CLIENT
    ok = stats["total"] == expected and all(
        n == EVENTS_PER_CLIENT for n in stats["clients"].values())
    for c in range(CLIENTS):
        doc = atomicjson.read_json(root / "clients" / f"client{c}.json")
        ok = ok and [e["seq"] for e in doc["events"]] == list(range(EVENTS_PER_CLIENT))
    print(f"{expected} events from {CLIENTS} clients in {elapsed:.2f} s; stats.json total "
          f"{stats['total']}; longest event-loop stall {max(gaps) * 1000:.1f} ms")
    print("verified: every event counted, every client file complete" if ok
          else "verification FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        sys.exit(asyncio.run(main(out)))
    with tempfile.TemporaryDirectory(prefix="atomicjson-async-") as tmp:
        sys.exit(asyncio.run(main(Path(tmp))))
