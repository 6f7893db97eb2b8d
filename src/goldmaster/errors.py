"""The exception family that the library raises and the CLI turns into exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class GoldmasterError(Exception):
    """Base of every error that goldmaster reports as one line to the user."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(GoldmasterError):
    """An option or argument value is invalid."""


class InputError(GoldmasterError):
    """An input path is missing, unreadable or of the wrong kind."""


class SourceChangedError(GoldmasterError):
    """A source file changed while capture was reading it."""


class BundleFormatError(GoldmasterError):
    """A bundle is not zstd, is truncated, or is not a goldmaster bundle."""


class UnsafeMemberError(BundleFormatError):
    """A bundle member would write outside the destination or is of a forbidden type."""


class VerificationError(GoldmasterError):
    """A checksum, size or listing in a bundle does not match."""

    exit_code = EXIT_FAILED


class DestinationError(GoldmasterError):
    """A restore destination is not usable as given."""


class EnvironmentCaptureError(GoldmasterError):
    """The Python environment could not be probed or rebuilt."""


class EngineError(GoldmasterError):
    """The container engine is unreachable or an image operation failed."""


class RegistryError(GoldmasterError):
    """An OCI registry rejected a request or served bad content."""


class CheckFailedError(GoldmasterError):
    """A golden-output check did not reproduce its recorded output."""

    exit_code = EXIT_FAILED


class SignatureError(GoldmasterError):
    """A signature is missing, malformed or does not match."""

    exit_code = EXIT_FAILED


class HostMismatchError(GoldmasterError):
    """This host cannot run what a bundle captured, and strict checking was asked for."""

    exit_code = EXIT_FAILED


class SecretFoundError(GoldmasterError):
    """A credential would be written into a bundle."""

    exit_code = EXIT_FAILED


class OutputError(GoldmasterError):
    """An output file could not be written, for example on a full disk."""
