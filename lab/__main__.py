import sys

from lab.cli import main

if __name__ == "__main__":  # not when a fork-server child re-imports the main module (lab.workloads.apps)
    sys.exit(main())
