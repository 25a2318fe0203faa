"""``python -m fastdistill``: a Ctrl-C while the CLI is still importing ends in one line and exit status 130."""

import sys

try:
    from fastdistill.cli import main

    code = main()
except KeyboardInterrupt:  # during imports or argument parsing; main() reports interrupts of a running command
    print("interrupted before the command started; nothing was written", file=sys.stderr)
    code = 130
raise SystemExit(code)
