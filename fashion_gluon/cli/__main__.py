"""``python -m fashion_gluon.cli``: the same as the ``fashion-gluon`` command."""
import sys

from . import main

sys.exit(main())
