"""``python -m fashion_gluon``: the same as the ``fashion-gluon`` command."""
import sys

from .cli import main

sys.exit(main())
