"""Import every module of huntaze_cli; exit 1 naming each one that fails.

`.ci/run` runs it in a virtualenv holding only the runtime dependencies (`pip install .`
without extras), so a module importing a package that only the test extras bring in
(as the webhook sink once did with httpx) fails CI instead of a user's install.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback


def main() -> int:
    import huntaze_cli

    failed = []
    # __main__ runs the CLI when imported; it only imports huntaze_cli.cli, checked here.
    names = [
        m.name
        for m in pkgutil.walk_packages(huntaze_cli.__path__, "huntaze_cli.")
        if not m.name.endswith("__main__")
    ]
    for name in ["huntaze_cli", *names]:
        try:
            importlib.import_module(name)
        except Exception:
            failed.append(name)
            sys.stderr.write(f"cannot import {name}:\n{traceback.format_exc(limit=1)}\n")
    print(f"imported {len(names) + 1 - len(failed)} of {len(names) + 1} modules")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
