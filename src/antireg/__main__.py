import sys

from antireg.cli import main

sys.exit(main())
