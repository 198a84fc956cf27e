import sys

from misato.cli import main

sys.exit(main())
