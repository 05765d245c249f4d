"""Writers for the crash tests (tests/test_crash.py), started by a fork server.

Starting a fresh interpreter that imports atomicjson costs about 0.1 s of CPU; the crash tests
start hundreds of writers. So one server process imports atomicjson once and forks each writer
on request: every writer is still a separate real process, killed with a real SIGKILL.

Protocol (one line per request on stdin, one line per answer on stdout):

* ``writer WID DURABLE TARGET ERRFILE``: fork a process that writes ``make_doc(WID, 0)``,
  ``make_doc(WID, 1)``, ... to TARGET forever; answers its pid.
* ``updater WID TARGET ACKFILE SUICIDE_AT ERRFILE``: fork a process that adds 1 to
  ``counts[WID]`` and to ``n`` of the document at TARGET with ``update_json``, forever,
  appending ``count`` to ACKFILE after each update returns; on update number SUICIDE_AT (if > 0)
  it SIGKILLs itself inside the update function, holding the lock; answers its pid.
* ``reap PID``: wait for that child; answers its raw wait status.

A child that raises writes the traceback to ERRFILE and exits with status 3, so a write that
fails (rather than being killed) is seen by the test.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any, Dict, List


def make_doc(wid: int, seq: int) -> Dict[str, Any]:
    """Version `seq` of writer `wid`: 2 to 4 MB of canonical JSON, every line distinct, so that
    a torn or mixed file cannot equal any version."""
    items = 20_000 + 10_000 * (wid % 3)
    tag = f"{wid}-{seq}"
    payload: List[str] = [f"{tag}-{i:06d}-" + "x" * 80 for i in range(items)]
    return {"writer": wid, "seq": seq, "items": items, "payload": payload}


def _writer(wid: int, durable: bool, target: str) -> None:
    import atomicjson

    seq = 0
    while True:
        atomicjson.write_json(target, make_doc(wid, seq), durable=durable, lock_timeout=60)
        seq += 1


def _updater(wid: int, target: str, ackfile: str, suicide_at: int) -> None:
    import atomicjson

    key = str(wid)
    count = 0

    def bump(doc: Dict[str, Any]) -> Dict[str, Any]:
        doc["counts"][key] = doc["counts"].get(key, 0) + 1
        doc["n"] += 1
        # Bulk, so that the write itself takes a while and external kills land inside it.
        doc["bulk"] = [key * 40] * 20_000
        if doc["counts"][key] == suicide_at:
            os.kill(os.getpid(), signal.SIGKILL)  # inside update_json, holding the lock
        return doc

    ack = os.open(ackfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    while True:
        doc = atomicjson.update_json(target, bump, default={"counts": {}, "n": 0},
                                     lock_timeout=60, durable=False)
        count = doc["counts"][key]
        os.write(ack, f"{count}\n".encode())


def _child(errfile: str, run: Any, *args: Any) -> None:
    # A forked child never returns into the server loop.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    try:
        run(*args)
    except BaseException:
        with open(errfile, "w") as f:
            f.write(traceback.format_exc())
        os._exit(3)
    os._exit(0)


def serve() -> None:
    import atomicjson  # noqa: F401  imported once, inherited by every fork

    for line in sys.stdin:
        words = line.split()
        if words[0] == "reap":
            _, status = os.waitpid(int(words[1]), 0)
            answer = status
        else:
            pid = os.fork()
            if pid == 0:
                if words[0] == "writer":
                    _child(words[4], _writer, int(words[1]), words[2] == "1", words[3])
                else:
                    _child(words[5], _updater, int(words[1]), words[2], words[3],
                           int(words[4]))
            answer = pid
        print(answer, flush=True)


if __name__ == "__main__":
    serve()
