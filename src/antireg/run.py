"""``python -m antireg.run --config FILE`` is ``antireg run --config FILE``."""

import sys

from antireg.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
