"""Print the broker's events as they happen: all of them, or one queue's; Ctrl-C ends it.

    CAIRN_URL=http://127.0.0.1:8080 python examples/follow_feed.py [QUEUE] [--after N]

Without ``--after`` it starts from now; with ``--after 0``, from the beginning of the log. If
the connection drops or the broker restarts, it resumes after the last event it printed:
nothing is missed and nothing is printed twice.
"""

from __future__ import annotations

import argparse
import contextlib
import os

from cairn_client import Client

URL = os.environ.get("CAIRN_URL", "http://127.0.0.1:8080")
TOKEN = os.environ.get("CAIRN_TOKEN")  # a token with events:read or read:<queue>


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue", nargs="?", help="only this queue's events")
    parser.add_argument("--after", type=int, help="start after this position")
    args = parser.parse_args()
    with Client(URL, token=TOKEN) as client:
        for event in client.follow(after=args.after, queue=args.queue):
            print(event.position, event.type, event.queue, event.message_id or "", flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the end, not an error
        main()
