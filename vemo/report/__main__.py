import sys

from vemo.report.cli import main

sys.exit(main())
