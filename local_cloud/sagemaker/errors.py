"""Errors the runtime raises, named after the SageMaker API errors they stand for.

The moto integration maps :attr:`LocalSageMakerError.code` to the service error of the same name.
"""

from __future__ import annotations


class LocalSageMakerError(Exception):
    """Base class. ``code`` is the SageMaker error code the API would return."""

    code = "InternalFailure"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(LocalSageMakerError):
    """The request is invalid, or the resource is in a state that does not allow it."""

    code = "ValidationException"


class ResourceNotFound(LocalSageMakerError):
    """No job or endpoint of that name."""

    code = "ResourceNotFound"


class ResourceInUse(LocalSageMakerError):
    """A job or endpoint of that name already exists."""

    code = "ResourceInUse"
