"""``python -m tools up | with-stores | bench | peers | console-bench | deps``: the development
commands."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: python -m tools COMMAND [ARGS]

  up            everything locally: stores, migrations, services, until Ctrl-C (make run)
  with-stores   run a command with Redis and Postgres available, started if needed (make test)
  bench         the standard scenarios beside the raw ceilings (make bench)
  peers         taskiq's and dramatiq's enqueue-and-drain rate here (make bench PEERS=1 runs it)
  console-bench the console's pages timed with a million tasks in a fresh database
  deps          find or fetch the programs the tests need (promtool, chromium)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "up":
        from tools.up import up_main

        return up_main(rest)
    if command == "with-stores":
        from tools.stores import with_stores_main

        return int(with_stores_main(rest))
    if command == "deps":
        from tools.deps import deps_main

        return deps_main(rest)
    if command == "peers":
        from tools.peers import peers_main

        return peers_main(rest)
    if command == "console-bench":
        from tools.console_bench import console_bench_main

        return console_bench_main(rest)
    if command == "bench":
        from tools.bench import bench_main

        return int(bench_main(rest))
    print(f"tools: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
