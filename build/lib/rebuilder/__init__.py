"""rebuilder: rebuild distribution packages from source and check them bit for bit.

The public surface is the command line (``rebuild``) and the files it writes:
the state (``state/<profile>.json``) and the static site. Modules are arranged
in the order of one pass: ``sync`` → ``plan`` → ``build`` → ``state`` → ``site``
→ ``audit``; ``pipeline`` is the only module that knows them all.
"""

from rebuilder.errors import RebuilderError

__all__ = ["RebuilderError", "__version__"]
__version__ = "0.1.0"
