"""What the installed patches call: the local SageMaker runtime and the Lambda invoker."""

from __future__ import annotations

from dataclasses import dataclass

from local_cloud.lambda_result import LambdaInvoker
from local_cloud.sagemaker import LocalSageMaker


@dataclass(frozen=True)
class Context:
    sagemaker: LocalSageMaker
    invoke_lambda: LambdaInvoker


_current: Context | None = None


def set_current(context: Context | None) -> None:
    global _current
    _current = context


def current() -> Context:
    """The installed context; a patched moto code path reached after uninstall() fails here."""
    if _current is None:
        raise RuntimeError("local_cloud.moto_patches is not installed")
    return _current


def runtime() -> LocalSageMaker:
    return current().sagemaker
