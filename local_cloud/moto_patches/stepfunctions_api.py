"""Step Functions API errors of moto's interpreter backend, with their error codes.

With ``execute_state_machine`` on, moto raises the exception classes of
``moto.stepfunctions.parser.api`` (``InvalidDefinition``, ``InvalidExecutionInput``,
``ResourceNotFound``, ``TaskDoesNotExist``...). They declare their code as ``code`` while their
base class (``moto.core.exceptions.AWSError``) serialises ``TYPE``, which they leave None: the
client saw an empty error code ("UnknownError"), e.g. for a definition the interpreter rejects.
Each gets ``TYPE = code``.
"""

from __future__ import annotations

from moto.core.exceptions import AWSError
from moto.stepfunctions.parser import api

from ._patching import Override, Patch, Require


def patches() -> list[Patch]:
    fixes: list[Patch] = [Require(api, "InvalidDefinition"), Require(AWSError, "TYPE")]
    for value in vars(api).values():
        if (
            isinstance(value, type)
            and issubclass(value, AWSError)
            and value.TYPE is None
            and isinstance(vars(value).get("code"), str)
        ):
            fixes.append(Override(value, "TYPE", expected=None, value=vars(value)["code"]))
    return fixes
