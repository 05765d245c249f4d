"""``python -m atomicjson``: the command line (see :mod:`atomicjson.cli`)."""

from atomicjson.cli import main

# The guard matters: `demo` starts worker processes with the "spawn" method, which imports
# this module (as `atomicjson.__main__`, not `__main__`) in every child.
if __name__ == "__main__":
    raise SystemExit(main())
