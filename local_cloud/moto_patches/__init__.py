"""Every extension of moto's private internals, in one place (moto[server]==5.2.5 only).

::

    from local_cloud import moto_patches
    runtime = LocalSageMaker(s3, work_dir, alarm_state=moto_patches.cloudwatch_alarm_state(region))
    moto_patches.install(sagemaker=runtime, invoke_lambda=invoker)   # before serving requests
    ...
    moto_patches.uninstall()                                          # restores moto

``install`` patches moto in this process (``mock_aws`` and a ``ThreadedMotoServer`` started in
it); a separate ``moto_server`` process is not affected. It checks first that moto is the pinned
version and that every attribute it replaces exists with the expected signature, and raises
:class:`MotoIncompatible` naming what changed. Calling it again is harmless: the patches stay,
and the runtime/invoker passed last are the ones used.

What each module patches (see their docstrings):

- :mod:`.sagemaker_api`: ``moto.sagemaker`` models/responses: training and transform jobs and
  endpoints run in the local runtime (``local_cloud.sagemaker.LocalSageMaker``); adds
  StopTrainingJob, StopTransformJob, UpdateEndpoint (with its DeploymentConfig); duplicate
  names fail as on AWS.
- :mod:`.cloudwatch_alarms`: patches nothing; :func:`cloudwatch_alarm_state` reads alarm states
  from ``moto.cloudwatch``'s backend for the runtime's endpoint auto-rollback (install checks
  that backend's shape).
- :mod:`.sagemaker_runtime_api`: ``moto.sagemakerruntime`` InvokeEndpoint -> the runtime.
- :mod:`.stepfunctions_sagemaker`: the ``sagemaker:*`` optimized integration (request-response
  and ``.sync``) in moto's Step Functions interpreter.
- :mod:`.stepfunctions_api`: the interpreter backend's API errors get their error codes
  (``InvalidDefinition`` was serialised with an empty code).
- :mod:`.stepfunctions_events`: executions that end put AWS's "Step Functions Execution Status
  Change" event on EventBridge (moto emitted none).
- :mod:`.stepfunctions_parser`: ``"RoleArn.$"`` in Parameters is a path (moto's lexer made it
  a literal key).
- :mod:`.dynamodb_api`: DynamoDB requests one at a time (moto's transactions deep-copy tables
  that other server threads were writing to).
- :mod:`.iam_api`: ``moto.iam``: adds SimulatePrincipalPolicy, evaluated from the principal's
  policies (the SageMaker Python SDK v3 validates roles with it).
- :mod:`.lambda_api`: ``moto.awslambda``: every invocation -> ``invoke_lambda``; SQS event source
  mappings no longer deliver inside SendMessage.
- :mod:`.s3_encryption`: ``moto.s3``: an object stored with SSE-C answers only to its key, one
  encrypted with SSE-KMS only while its key is enabled (GetObject, HeadObject, CopyObject), as on
  AWS; moto served both to anyone.

Requirements for the process that runs moto:

- ``MOTO_PORT`` must hold the moto server's port before executions run: the interpreter sends
  its SageMaker/Lambda calls to ``http://localhost:$MOTO_PORT``.
- Step Functions must execute: set
  ``moto.core.config.default_user_config["stepfunctions"]["execute_state_machine"] = True``
  before the state machine is created (the flag picks the backend that stores it).
- Keep ``lambda.use_docker`` at its default (True): False selects moto's canned-response Lambda.
"""

from __future__ import annotations

import threading

from local_cloud.lambda_result import HANDLED, UNHANDLED, LambdaInvoker, LambdaResult
from local_cloud.sagemaker import AlarmState, LocalSageMaker

from . import _context
from ._patching import PINNED_MOTO_VERSION, MotoIncompatible, Patch, check, check_version

__all__ = [
    "HANDLED",
    "PINNED_MOTO_VERSION",
    "UNHANDLED",
    "LambdaInvoker",
    "LambdaResult",
    "MotoIncompatible",
    "all_patches",
    "cloudwatch_alarm_state",
    "install",
    "is_installed",
    "uninstall",
]

_lock = threading.Lock()
_applied: list[Patch] = []


def all_patches() -> list[Patch]:
    """Every patch declaration, freshly built (nothing applied). Raises MotoIncompatible when
    moto's modules no longer import the way the patch modules expect."""
    check_version()
    try:
        from . import (
            cloudwatch_alarms,
            dynamodb_api,
            iam_api,
            lambda_api,
            s3_encryption,
            sagemaker_api,
            sagemaker_runtime_api,
            stepfunctions_api,
            stepfunctions_events,
            stepfunctions_parser,
            stepfunctions_sagemaker,
        )
    except (ImportError, AttributeError) as error:
        raise MotoIncompatible(
            f"moto {PINNED_MOTO_VERSION} internals imported by local_cloud.moto_patches are "
            f"missing: {error}"
        ) from error
    return [
        *sagemaker_api.patches(),
        *sagemaker_runtime_api.patches(),
        *stepfunctions_sagemaker.patches(),
        *stepfunctions_api.patches(),
        *stepfunctions_events.patches(),
        *stepfunctions_parser.patches(),
        *lambda_api.patches(),
        *dynamodb_api.patches(),
        *cloudwatch_alarms.patches(),
        *iam_api.patches(),
        *s3_encryption.patches(),
    ]


def cloudwatch_alarm_state(region: str, account_id: str | None = None) -> AlarmState:
    """The ``alarm_state`` callable for :class:`LocalSageMaker`: the state of a CloudWatch
    alarm in moto's backend in this process (``account_id`` defaults to moto's default
    account, the one a local cloud's clients use), None when it does not exist. Raises
    MotoIncompatible when moto is not the pinned version."""
    check_version()
    try:
        from . import cloudwatch_alarms
    except (ImportError, AttributeError) as error:
        raise MotoIncompatible(
            f"moto {PINNED_MOTO_VERSION} CloudWatch internals are missing: {error}"
        ) from error
    if account_id is None:
        return cloudwatch_alarms.alarm_state_reader(region)
    return cloudwatch_alarms.alarm_state_reader(region, account_id)


def _check_config() -> None:
    from moto.core.config import default_user_config

    if default_user_config.get("lambda", {}).get("use_docker", True) is False:
        raise MotoIncompatible(
            "moto config lambda.use_docker is False: moto then uses its canned-response Lambda "
            "backend and never reaches local_cloud.moto_patches; keep the default (True)"
        )


def install(*, sagemaker: LocalSageMaker, invoke_lambda: LambdaInvoker) -> None:
    """Patch moto in this process so that SageMaker work runs in ``sagemaker`` and Lambda
    invocations go to ``invoke_lambda``. Idempotent."""
    with _lock:
        _context.set_current(_context.Context(sagemaker=sagemaker, invoke_lambda=invoke_lambda))
        if _applied:
            return
        try:
            patches = all_patches()
            check(patches)
            _check_config()
        except MotoIncompatible:
            _context.set_current(None)
            raise
        for patch in patches:
            patch.apply()
            _applied.append(patch)


def uninstall() -> None:
    """Restore everything :func:`install` changed. Idempotent."""
    with _lock:
        while _applied:
            _applied.pop().revert()
        _context.set_current(None)


def is_installed() -> bool:
    with _lock:
        return bool(_applied)
