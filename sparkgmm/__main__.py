"""``python -m sparkgmm {fit,predict,select,update} [flags]``: the jobs, with Spark started locally unless told
otherwise."""

import sys

from .cli import main

sys.exit(main())
