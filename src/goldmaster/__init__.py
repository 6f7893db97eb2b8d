"""goldmaster: a verifiable golden master of a trained model."""

__version__ = "0.1.0"

SCHEMA_VERSION = 1
