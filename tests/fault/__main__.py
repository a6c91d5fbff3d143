import sys

from tests.fault.run import main

raise SystemExit(main(sys.argv[1:]))
