"""One error base class: its message is exactly what the CLI prints.

Anything the operator can cause or fix (a bad config, a corrupt index, an
unreachable mirror, a bad signature, a held lock) is raised as a subclass of
:class:`RebuilderError` with a one-line message; the CLI prints
``rebuild: error: <message>`` and exits non-zero, never with a traceback.
"""


class RebuilderError(Exception):
    """Base class of every error the CLI reports as one line."""

    exit_code = 2


class ConfigError(RebuilderError):
    """A configuration file is missing, unreadable or invalid."""


class FetchError(RebuilderError):
    """A URL or file could not be fetched, or its content is not what was promised."""


class NotFoundError(FetchError):
    """The URL or file does not exist (HTTP 404/410, no such file)."""


class ChecksumError(FetchError):
    """Downloaded bytes do not match the checksum the index gave."""


class SignatureError(RebuilderError):
    """An OpenPGP signature is missing, invalid, or made by an untrusted key."""


class RepositoryIndexError(RebuilderError):
    """A repository index is corrupt or does not parse."""


class StateError(RebuilderError):
    """The state directory is locked, corrupt or cannot be written."""


class LockedError(StateError):
    """Another pass holds the state lock."""
