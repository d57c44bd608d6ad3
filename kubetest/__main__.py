import sys

from kubetest.cli import main

sys.exit(main())
