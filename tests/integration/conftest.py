"""The local SageMaker runtime's fixtures (tests.emulator.runtime_fixtures): moto S3 in-process
and a fast runtime."""

from tests.emulator.runtime_fixtures import runtime, s3, settings

__all__ = ["runtime", "s3", "settings"]
