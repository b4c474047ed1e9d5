"""statemachine/retrain.asl.json: valid, JSONPath only, robust, and allowed by its role.

Step Functions does not validate parameter names or paths at deploy time, and a missing path is
an uncatchable ``States.Runtime`` at run time: these checks are the safety net.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import botocore.session  # type: ignore[import-untyped,unused-ignore]
import pytest
from statelint.config import Config
from statelint.linter import Linter
from statelint.problem import ProblemType

from refit.config import Settings
from refit.data.datasets import DataFile, DataSelection, RunManifests
from refit.prepare_run.run_plan import PlanInputs, RunPlan, build_rollback_plan, build_run_plan
from refit.registry.champion import Champion, ChampionState
from refit.registry.rollback import RollbackTarget
from refit.run_input import RunRequest
from tests.static.static_helpers import (
    ASL_PATH,
    SUBSTITUTIONS,
    allowed_actions,
    as_list,
    identity_statements,
    strings_in,
    walk,
)

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
SAGEMAKER_TASK = re.compile(r"arn:aws:states:::sagemaker:(\w+?)(\.sync)?")
SDK_TASK = re.compile(r"arn:aws:states:::aws-sdk:(\w+):(\w+)")
FUNCTION_SUBSTITUTION = re.compile(r"\$\{(\w+)FunctionArn\}")
# An input path's top-level key: "$.run.deploy" -> "run" ("$$." is the context object).
INPUT_PATH = re.compile(r"(?<![\w$])\$\.([A-Za-z_]\w*)")

# docs/architecture.md: the top-level keys of the CreateTrainingJob request in $.run.trainingJob.
TRAINING_JOB_KEYS = {
    "TrainingJobName",
    "AlgorithmSpecification",
    "HyperParameters",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "EnableManagedSpotTraining",
    "CheckpointConfig",
    "RoleArn",
    "Tags",
}
RECORD_OUTCOMES = {"promoted", "rejected", "rejected-input", "failed"}
LAMBDA_TRANSIENT_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
RUN_PATH = re.compile(r"(?<![\w$])\$\.run((?:\.\w+)+)")
PLAN_ENV = {
    "STACK_NAME": "refit",
    "DATA_BUCKET": "refit-data",
    "RUNS_TABLE": "refit-runs",
    "SAGEMAKER_ROLE_ARN": "arn:aws:iam::123456789012:role/refit-sagemaker",
    "TRAINING_IMAGE_URI": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
    "ENDPOINT_NAME": "refit-endpoint",
}


@pytest.fixture(scope="module")
def sagemaker_model() -> Any:
    return botocore.session.get_session().get_service_model("sagemaker")


def _tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in states.items() if s["Type"] == "Task"}


def _pascal(name: str) -> str:
    return name[0].upper() + name[1:]


def _targets(state: dict[str, Any]) -> Iterator[str]:
    if "Next" in state:
        yield state["Next"]
    if "Default" in state:
        yield state["Default"]
    for rule in state.get("Choices", []):
        yield rule["Next"]
    for catcher in state.get("Catch", []):
        yield catcher["Next"]


def _invoked_function(state: dict[str, Any]) -> str | None:
    """The substitution naming the function a Lambda task invokes, if it is one."""
    target = state["Resource"]
    if target == LAMBDA_INVOKE:
        target = state["Parameters"]["FunctionName"]
    match = FUNCTION_SUBSTITUTION.fullmatch(target)
    return match.group(1) if match else None


def _required_actions(state: dict[str, Any]) -> set[str]:
    """IAM actions an integration needs, per the Step Functions service-integration docs."""
    if _invoked_function(state) is not None:
        return {"lambda:InvokeFunction"}
    resource = state["Resource"]
    if sdk := SDK_TASK.fullmatch(resource):
        return {f"{sdk.group(1)}:{_pascal(sdk.group(2))}"}
    optimized = SAGEMAKER_TASK.fullmatch(resource)
    assert optimized, f"unexpected integration {resource}"
    action = _pascal(optimized.group(1))
    needed = {f"sagemaker:{action}"}
    params = state.get("Parameters", {})
    if any(key.startswith("Tags") for key in params):
        needed.add("sagemaker:AddTags")
    if any(key.startswith(("RoleArn", "ExecutionRoleArn")) for key in params):
        needed.add("iam:PassRole")
    if optimized.group(2):  # .sync: poll, stop on timeout, and the managed event rule
        kind = action.removeprefix("Create")
        needed |= {
            f"sagemaker:Describe{kind}",
            f"sagemaker:Stop{kind}",
            "sagemaker:ListTags",
            "events:PutTargets",
            "events:PutRule",
            "events:DescribeRule",
        }
    return needed


def _operation(state: dict[str, Any]) -> str | None:
    """The SageMaker API operation a task calls, if it calls one."""
    if sdk := SDK_TASK.fullmatch(state["Resource"]):
        return _pascal(sdk.group(2)) if sdk.group(1) == "sagemaker" else None
    optimized = SAGEMAKER_TASK.fullmatch(state["Resource"])
    return _pascal(optimized.group(1)) if optimized else None


def _check_members(node: Any, shape: Any, where: str) -> None:
    """Every literal key of a request is a member of its botocore shape, recursively."""
    if shape.type_name == "list" and isinstance(node, list):
        for i, item in enumerate(node):
            _check_members(item, shape.member, f"{where}[{i}]")
        return
    if shape.type_name != "structure" or not isinstance(node, dict):
        return
    for key, value in node.items():
        member = key.removesuffix(".$")
        assert member in shape.members, f"{where}.{member} is not a {shape.name} member"
        if not key.endswith(".$"):
            _check_members(value, shape.members[member], f"{where}.{member}")


def _input_keys(state: dict[str, Any]) -> set[str]:
    """Top-level state keys that a state reads from its input."""
    read: list[str] = []
    for key, value in _path_fields(state):
        if key.endswith(".$") or key.endswith("Path") or key == "Variable":
            read.append(value)
    return {m for text in read for m in INPUT_PATH.findall(text)}


def _path_fields(state: dict[str, Any]) -> Iterator[tuple[str, str]]:
    # Parameters (not ResultSelector: that reads the task's result), Choice rules, Wait paths.
    sources = [state.get("Parameters", {}), state.get("Choices", [])]
    sources.append({k: v for k, v in state.items() if k in ("SecondsPath", "TimestampPath")})
    for source in sources:
        for node in walk(source):
            if isinstance(node, dict):
                for key, value in node.items():
                    if isinstance(value, str):
                        yield key, value


def _result_key(result_path: Any) -> str | None:
    return None if result_path in (None, "$") else result_path.removeprefix("$.").split(".")[0]


def _guaranteed_keys(asl: dict[str, Any]) -> dict[str, frozenset[str]]:
    """For each state, the top-level keys present on EVERY path that reaches it."""
    states = asl["States"]
    found: dict[str, frozenset[str]] = {asl["StartAt"]: frozenset()}
    pending = [asl["StartAt"]]
    while pending:
        name = pending.pop()
        state, keys = states[name], found[name]
        outgoing: list[tuple[str, frozenset[str]]] = []
        if state["Type"] in ("Task", "Pass", "Map"):
            if state.get("ResultPath", "$") == "$":
                produced = frozenset(state.get("ResultSelector", state.get("Parameters", {})))
                out = frozenset(k.removesuffix(".$") for k in produced)
            else:
                added = _result_key(state.get("ResultPath"))
                out = keys | {added} if added else keys
            if "Next" in state:
                outgoing.append((state["Next"], out))
            for catcher in state.get("Catch", []):
                added = _result_key(catcher.get("ResultPath", "$"))
                outgoing.append((catcher["Next"], keys | {added} if added else frozenset()))
        else:
            outgoing = [(target, keys) for target in _targets(state)]
        for target, incoming in outgoing:
            merged = incoming if target not in found else found[target] & incoming
            if found.get(target) != merged:
                found[target] = merged
                pending.append(target)
    return found


def test_asl_is_statelint_clean() -> None:
    # Given the definition file (function ARNs are ${Substitutions}, not yet URIs)
    config = Config(ignored_problem_types={ProblemType.URI})
    # When statelint validates it
    problems = Linter.validate(str(ASL_PATH), config)
    # Then it reports nothing but its one known gap: statelint 3.1.0 allows only MaxItems in an
    # ItemReader's ReaderConfig, while Step Functions requires InputType for an s3:getObject
    # reader (docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html).
    known_gap = 'Field "InputType" not allowed in State Machine.States.CheckDataFiles.ItemReader'
    assert [p for p in problems if not p.startswith(known_gap)] == []


def test_jsonpath_only_and_valid_json_before_substitution(
    asl: dict[str, Any], asl_text: str
) -> None:
    # Given the definition
    keys = {k for node in walk(asl) if isinstance(node, dict) for k in node}
    texts = [v for v in walk(asl) if isinstance(v, str)]
    # Then it uses no JSONata, variables or $states (moto's interpreter runs JSONPath only)
    assert "QueryLanguage" not in keys
    assert not keys & {"Arguments", "Output", "Assign", "Items"}
    assert not any(t.startswith("{%") for t in texts)
    assert "$states" not in asl_text
    # And ${Substitutions} occur only inside strings, naming exactly the contract's
    used = set(re.findall(r"\$\{(\w+)\}", asl_text))
    assert used == SUBSTITUTIONS
    assert used == {m for t in texts for m in re.findall(r"\$\{(\w+)\}", t)}


def test_every_transition_targets_a_state_and_every_state_is_reachable(
    asl: dict[str, Any], states: dict[str, Any]
) -> None:
    # Given the transitions
    targets = {t for s in states.values() for t in _targets(s)} | {asl["StartAt"]}
    # Then each names a state and each state is the target of one
    assert targets <= set(states)
    assert set(states) == targets


def test_every_task_retries_transient_errors_and_catches_all(states: dict[str, Any]) -> None:
    for name, task in _tasks(states).items():
        # Given a task
        retriers = [r for r in task.get("Retry", []) if r.get("MaxAttempts", 3) > 0]
        retried = {e for r in retriers for e in r["ErrorEquals"]}
        caught = [c for c in task.get("Catch", []) if c["ErrorEquals"] == ["States.ALL"]]
        # Then it retries with backoff and jitter, and catches everything
        assert retried, name
        assert all(r["BackoffRate"] > 1 and r.get("JitterStrategy") for r in retriers)
        assert len(caught) == 1, name
        # And never retries arbitrary errors, nor a failed job: only a run's record, which
        # RecordRun rewrites the same (idempotent), retries its function's errors, except a
        # wrong outcome document (a retrier of 0 attempts, before the wildcard)
        assert "States.ALL" not in retried, name
        if name.startswith("Record"):
            errors = [r["ErrorEquals"] for r in task["Retry"]]
            assert errors.index(["InvalidRunOutcome"]) < errors.index(["States.TaskFailed"])
            assert task["Retry"][errors.index(["InvalidRunOutcome"])]["MaxAttempts"] == 0
        else:
            assert "States.TaskFailed" not in retried, name
        if _invoked_function(task):
            assert retried >= LAMBDA_TRANSIENT_ERRORS, name


def test_failures_flow_to_the_record_and_records_never_loop(states: dict[str, Any]) -> None:
    for name, task in _tasks(states).items():
        # Train's first catcher is the on-demand fallback (test_spot_capacity_failure_...)
        (catcher,) = task["Catch"][1:] if name == "Train" else task["Catch"]
        target = states[catcher["Next"]]
        if name.startswith("Record"):
            # Then a failing RecordRun ends the execution (no loop back into RecordFailure)
            assert target["Type"] == "Fail", name
        elif name == "CleanupResources":
            # Then a failed cleanup still records the promotion: the new model is live
            assert catcher == {
                "ErrorEquals": ["States.ALL"],
                "ResultPath": "$.cleanupError",
                "Next": "RecordPromoted",
            }
        else:
            # Then any other failure is recorded with its error under $.error
            assert catcher["Next"] == "RecordFailure", name
            assert catcher["ResultPath"] == "$.error", name
    # And the endpoint's own failure states feed the record the same way
    for name in ("EndpointRolledBack", "EndpointTimedOut", "EndpointFailed"):
        assert states[name]["ResultPath"] == "$.error"
        assert states[name]["Parameters"]["Error"].startswith("Refit.")
        assert states[name]["Next"] == "RecordFailure"
    # And a failed training job that is not retried on demand is recorded as it was caught
    assert states["TrainingFailed"]["Parameters"] == {
        "Error.$": "$.spotFailure.Error",
        "Cause.$": "$.spotFailure.Cause",
    }
    assert (states["TrainingFailed"]["ResultPath"], states["TrainingFailed"]["Next"]) == (
        "$.error",
        "RecordFailure",
    )
    assert states["RecordFailure"]["Next"] == "RunFailed"
    assert states["RunFailed"]["Error"] == "Refit.RunFailed"


def test_record_run_receives_the_contract_payload(states: dict[str, Any]) -> None:
    # Given the four RecordRun tasks
    records = {n: s for n, s in _tasks(states).items() if _invoked_function(s) == "RecordRun"}
    payloads = [s["Parameters"]["Payload"] for s in records.values()]
    # Then each sends {outcome, executionName, state} and together they cover every outcome
    assert {p["outcome"] for p in payloads} == RECORD_OUTCOMES
    for payload in payloads:
        assert payload["executionName.$"] == "$$.Execution.Name"
        assert payload["state.$"] == "$"
    assert all(s["ResultPath"] is None for s in records.values())
    assert all(states[s["Next"]]["Type"] in ("Succeed", "Fail") for s in records.values())


def test_prepare_run_builds_the_whole_state(states: dict[str, Any]) -> None:
    # Given PrepareRun
    prepare = states["PrepareRun"]
    # Then it hands over the execution and its input (keys refit.prepare_run.prepare.PrepareRunEvent
    # reads), and its result becomes {"run": ...}
    assert prepare["Parameters"]["Payload"] == {
        "executionName.$": "$$.Execution.Name",
        "executionArn.$": "$$.Execution.Id",
        "startTime.$": "$$.Execution.StartTime",
        "input.$": "$",
    }
    assert prepare["ResultSelector"] == {"run.$": "$.Payload"}
    assert prepare["ResultPath"] == "$"


def test_state_machine_role_allows_every_integration(
    states: dict[str, Any], resources: dict[str, Any]
) -> None:
    # Given what the state machine role allows
    allowed = allowed_actions(resources, "StateMachineRole")
    invoke = next(
        s for _, s in identity_statements(resources) if s.get("Sid") == "InvokeWorkflowFunctions"
    )
    invocable = {r["Fn::GetAtt"][0] for r in as_list(invoke["Resource"]) if "Fn::GetAtt" in r}
    for name, task in _tasks(states).items():
        # Then every action each task's integration needs is granted
        missing = _required_actions(task) - allowed
        assert missing == set(), f"{name} needs {sorted(missing)}"
        # And Lambda tasks invoke only the functions the role names
        function = _invoked_function(task)
        if function is not None:
            assert f"{function}Function" in invocable, name
    # And the .sync event rules are the managed ones
    rules = next(s for _, s in identity_statements(resources) if s.get("Sid") == "SyncEventRules")
    text = " ".join(strings_in(rules["Resource"]))
    for kind in ("TrainingJobs", "TransformJobs"):
        assert f"rule/StepFunctionsGetEventsForSageMaker{kind}Rule" in text


def test_sagemaker_parameters_are_request_members(
    states: dict[str, Any], sagemaker_model: Any
) -> None:
    for name, task in _tasks(states).items():
        operation = _operation(task)
        if operation is None:
            continue
        # Given a SageMaker task and the botocore model of its request
        request = sagemaker_model.operation_model(operation).input_shape
        params = task["Parameters"]
        # Then every key is a request member and every required member is given
        _check_members(params, request, operation)
        given = {key.removesuffix(".$") for key in params}
        assert set(request.required_members) <= given, f"{name}: {operation}"


def test_batch_transform_passes_the_transform_request_verbatim(
    states: dict[str, Any], sagemaker_model: Any
) -> None:
    # Given the RunBatchTransform task and the CreateTransformJob request shape
    params = states["RunBatchTransform"]["Parameters"]
    members = sagemaker_model.operation_model("CreateTransformJob").input_shape.members
    # Then every key comes from $.run.deploy.transform under its own name
    for key, path in params.items():
        member = key.removesuffix(".$")
        assert path == f"$.run.deploy.transform.{member}"
        assert member in members


def test_train_passes_the_training_job_request_verbatim(
    states: dict[str, Any], sagemaker_model: Any
) -> None:
    # Given the Train task and the CreateTrainingJob request shape
    params = states["Train"]["Parameters"]
    members = sagemaker_model.operation_model("CreateTrainingJob").input_shape.members
    # Then every contract key of $.run.trainingJob is passed under its own name
    assert {key.removesuffix(".$") for key in params} == TRAINING_JOB_KEYS
    for key, path in params.items():
        member = key.removesuffix(".$")
        assert path == f"$.run.trainingJob.{member}"
        assert member in members


def test_train_on_demand_passes_the_on_demand_request_verbatim(
    states: dict[str, Any], sagemaker_model: Any
) -> None:
    # Given the on-demand retry and the spot Train task
    train, on_demand = states["Train"], states["TrainOnDemand"]
    members = sagemaker_model.operation_model("CreateTrainingJob").input_shape.members
    # Then it passes every contract key of $.run.onDemandTrainingJob under its own name
    params = on_demand["Parameters"]
    assert {key.removesuffix(".$") for key in params} == TRAINING_JOB_KEYS
    for key, path in params.items():
        member = key.removesuffix(".$")
        assert path == f"$.run.onDemandTrainingJob.{member}"
        assert member in members
    # And it behaves like Train: same resource, timeout, trimmed result, retries
    for field in ("Resource", "TimeoutSeconds", "ResultSelector", "ResultPath", "Retry"):
        assert on_demand[field] == train[field], field
    # And it is the only retry: its failures, whatever they are, are recorded
    assert on_demand["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
    ]
    assert on_demand["Next"] == train["Next"] == "EvaluateModels"


def _rules(rule: dict[str, Any]) -> list[dict[str, Any]]:
    """A Choice rule's comparisons, flattened through And/Or."""
    nested = rule.get("And", []) + rule.get("Or", [])
    return [rule] if not nested else [r for n in nested for r in _rules(n)]


def _guarded(rule: dict[str, Any]) -> None:
    """Every path an And compares is first tested with IsPresent (AWS fails a missing path
    with an uncatchable States.Runtime; And stops at the first false)."""
    seen: set[str] = set()
    for part in rule["And"]:
        if "Variable" in part:
            if part.get("IsPresent") is True:
                seen.add(part["Variable"])
            assert part["Variable"] in seen, f"{part['Variable']} compared before IsPresent"
        else:
            for inner in _rules(part):
                assert inner["Variable"] in seen, f"{inner['Variable']} compared before IsPresent"


def test_spot_capacity_failure_is_retried_once_on_demand(states: dict[str, Any]) -> None:
    # Given Train's catchers
    train = states["Train"]
    # Then a failed or stopped job (States.TaskFailed, Cause = its Describe JSON) goes to the
    # fallback check; API errors, timeouts and anything else go to the record as before
    assert train["Catch"] == [
        {
            "ErrorEquals": ["States.TaskFailed"],
            "ResultPath": "$.spotFailure",
            "Next": "CanTrainOnDemand",
        },
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"},
    ]
    # And the Cause is parsed only when there is an on-demand request and it looks like JSON
    # (States.StringToJson on anything else is an uncatchable States.Runtime)
    (can,) = states["CanTrainOnDemand"]["Choices"]
    _guarded(can)
    assert {"Variable": "$.run.onDemandTrainingJob", "IsNull": False} in can["And"]
    assert {"Variable": "$.spotFailure.Cause", "StringMatches": "{*}"} in can["And"]
    assert (can["Next"], states["CanTrainOnDemand"]["Default"]) == (
        "ParseSpotFailure",
        "TrainingFailed",
    )
    parse = states["ParseSpotFailure"]
    assert parse["Parameters"] == {"describe.$": "States.StringToJson($.spotFailure.Cause)"}
    assert (parse["ResultPath"], parse["Next"]) == ("$.spotFailure.parsed", "SpotCapacityFailed")
    # And only a capacity failure falls back: MaxWaitTimeExceeded, or a capacity FailureReason
    capacity = states["SpotCapacityFailed"]
    for rule in capacity["Choices"]:
        _guarded(rule)
        assert rule["Next"] == "FallBackOnDemand"
    compared = {
        (r["Variable"].rsplit(".", 1)[1], r.get("StringEquals") or r.get("StringMatches"))
        for rule in capacity["Choices"]
        for r in _rules(rule)
        if "StringEquals" in r or "StringMatches" in r
    }
    assert ("SecondaryStatus", "MaxWaitTimeExceeded") in compared
    assert ("FailureReason", "CapacityError*") in compared
    assert capacity["Default"] == "TrainingFailed"
    # And the fallback is noted in the state, then the on-demand job runs, once
    fallback = states["FallBackOnDemand"]
    assert fallback["Parameters"] == {
        "from": "spot",
        "to": "on-demand",
        "spotJobName.$": "$.run.trainingJob.TrainingJobName",
        "onDemandJobName.$": "$.run.onDemandTrainingJob.TrainingJobName",
    }
    assert (fallback["ResultPath"], fallback["Next"]) == ("$.capacityFallback", "TrainOnDemand")
    into_on_demand = [n for n, s in states.items() if "TrainOnDemand" in set(_targets(s))]
    assert into_on_demand == ["FallBackOnDemand"]


def test_result_selectors_read_only_output_members(
    states: dict[str, Any], sagemaker_model: Any
) -> None:
    for name, task in _tasks(states).items():
        operation = _operation(task)
        if operation is None or "ResultSelector" not in task:
            continue
        # Given a SageMaker task: .sync returns the Describe* response, aws-sdk its own
        if task["Resource"].endswith(".sync"):
            operation = operation.replace("Create", "Describe", 1)
        output = sagemaker_model.operation_model(operation).output_shape
        for path in task["ResultSelector"].values():
            # Then each selected path walks existing members of that response
            shape = output
            for part in path.removeprefix("$.").split("."):
                assert part in shape.members, f"{name}: {path} not in {operation} output"
                shape = shape.members[part]


def test_result_selectors_keep_the_contract_names(states: dict[str, Any]) -> None:
    # Given the trimmed results
    # Then they are the shapes docs/architecture.md documents
    assert set(states["Train"]["ResultSelector"]) == {
        "TrainingJobName.$",
        "TrainingJobStatus.$",
        "modelDataUrl.$",
        "TrainingTimeInSeconds.$",
        "BillableTimeInSeconds.$",
    }
    assert states["Train"]["ResultSelector"]["modelDataUrl.$"] == (
        "$.ModelArtifacts.S3ModelArtifacts"
    )
    assert states["DescribeEndpoint"]["ResultSelector"] == {
        "status.$": "$.EndpointStatus",
        "configName.$": "$.EndpointConfigName",
    }
    assert set(states["RunBatchTransform"]["ResultSelector"]) == {
        "TransformJobName.$",
        "TransformJobStatus.$",
        "TransformStartTime.$",
        "TransformEndTime.$",
    }
    expected_paths = {
        "Train": "$.training",
        "TrainOnDemand": "$.training",
        "EvaluateModels": "$.evaluation",
        "DescribeEndpoint": "$.endpoint",
        "CountEndpointPoll": "$.endpointPolls",
        "InitEndpointPolls": "$.endpointPolls",
        "RunBatchTransform": "$.transform",
        "CleanupResources": "$.cleanup",
    }
    for name, path in expected_paths.items():
        assert states[name]["ResultPath"] == path, name


def test_every_path_read_is_set_on_every_way_in(asl: dict[str, Any]) -> None:
    # Given, for each state, the keys guaranteed present whichever way it is reached
    guaranteed = _guaranteed_keys(asl)
    for name, state in asl["States"].items():
        # Then every top-level key it reads is among them (else: uncatchable States.Runtime)
        missing = _input_keys(state) - guaranteed[name]
        assert missing == set(), f"{name} reads {sorted(missing)} that may be absent"


def test_endpoint_wait_loop_is_bounded_and_verifies_the_config(states: dict[str, Any]) -> None:
    # Given the endpoint wait loop
    wait = states["WaitForEndpoint"]
    status = states["EndpointStatus"]
    # Then it waits by the plan's seconds, counts polls and stops at the plan's maximum
    assert wait["SecondsPath"] == "$.run.deploy.pollSeconds"
    loop_rule = next(rule for rule in status["Choices"] if rule["Next"] == "WaitForEndpoint")
    bound = [c for c in loop_rule["And"] if "NumericLessThanPath" in c]
    assert bound == [
        {"Variable": "$.endpointPolls.count", "NumericLessThanPath": "$.run.deploy.maxPolls"}
    ]
    assert states["CountEndpointPoll"]["Parameters"] == {
        "count.$": "States.MathAdd($.endpointPolls.count, 1)",
        "startedAt.$": "$.endpointPolls.startedAt",
        "lastPolledAt.$": "$$.State.EnteredTime",
    }
    # And the rollout RecordRun prices runs from just after Create/UpdateEndpoint to the last poll
    assert states["InitEndpointPolls"]["Parameters"] == {
        "count": 0,
        "startedAt.$": "$$.State.EnteredTime",
    }
    assert states["UpdateEndpoint"]["Next"] == states["CreateEndpoint"]["Next"]
    assert states["UpdateEndpoint"]["Next"] == "InitEndpointPolls"
    # And an update's known rollout time is slept through once, before the first poll
    assert states["InitEndpointPolls"]["Next"] == "WaitForRollout"
    assert states["WaitForRollout"]["SecondsPath"] == "$.run.deploy.rolloutSeconds"
    assert states["WaitForRollout"]["Next"] == "WaitForEndpoint"
    # And InService counts only if the endpoint serves the config this run created
    verify = states["VerifyEndpointConfig"]["Choices"][0]
    assert verify["Variable"] == "$.endpoint.configName"
    assert verify["StringEqualsPath"] == "$.run.deploy.endpointConfigName"
    assert states["VerifyEndpointConfig"]["Default"] == "EndpointRolledBack"


def test_train_timeout_exceeds_the_jobs_own_limits(
    states: dict[str, Any], template: dict[str, Any]
) -> None:
    # Given the largest runtime and wait the template lets a job have
    parameters = template["Parameters"]
    longest = max(parameters[p]["MaxValue"] for p in ("MaxRuntimeSeconds", "MaxWaitSeconds"))
    # Then Step Functions gives up only after the job would have stopped itself
    assert states["Train"]["TimeoutSeconds"] > longest
    assert states["TrainOnDemand"]["TimeoutSeconds"] > longest


def _plan(deployment_mode: str, *, champion: bool, batch_input: bool, spot: bool = True) -> RunPlan:
    """A RunPlan as PrepareRun builds it (refit.prepare_run.run_plan), for a run with two accepted
    files."""
    settings = Settings.from_env(
        {
            **PLAN_ENV,
            "DEPLOYMENT_MODE": deployment_mode,
            "USE_SPOT_TRAINING": "true" if spot else "false",
        }
    )
    known = Champion("old", "s3://refit-data/models/old/output/model.tar.gz", "old", 3, "endpoint")
    files = tuple(DataFile(f"data/train/{i}.csv", "e", "v", 10, 5, 4) for i in range(2))
    return build_run_plan(
        PlanInputs(
            run_id="s3-0123456789abcdef",
            request=RunRequest(source="s3"),
            selection=DataSelection(files, (), ()),
            manifests=RunManifests("s3://refit-data/runs/r/manifest.json", "s3://r/train.manifest"),
            champion=ChampionState(known if champion else None, endpoint_exists=champion),
            code_uri="s3://refit-data/code/sourcedir-0.tar.gz",
            has_validation_data=True,
            has_batch_input=batch_input,
            region="us-east-1",
        ),
        settings,
    )


def _resolve(document: Any, dotted: str) -> Any:
    for part in dotted.strip(".").split("."):
        assert isinstance(document, dict) and part in document, f"missing .{part} in {dotted}"
        document = document[part]
    return document


@pytest.mark.parametrize(
    ("mode", "champion", "batch_input", "spot"),
    [
        ("endpoint", True, False, True),
        ("endpoint", False, False, True),
        ("batch", True, True, True),
        ("endpoint", True, False, False),
    ],
)
def test_every_run_path_resolves_in_a_plan_built_by_refit(
    states: dict[str, Any], mode: str, champion: bool, batch_input: bool, spot: bool
) -> None:
    # Given a plan built by the same code PrepareRun runs, as the state machine receives it
    plan = _plan(mode, champion=champion, batch_input=batch_input, spot=spot)
    document = plan.to_document()
    # Then it is ready to train and its training requests have the keys Train passes
    assert plan.status == document["status"] == "ready"
    assert set(document["trainingJob"]) == TRAINING_JOB_KEYS
    if spot:
        assert set(document["onDemandTrainingJob"]) == TRAINING_JOB_KEYS
    else:
        # (null: CanTrainOnDemand never lets such a run reach a state reading inside it)
        assert document["onDemandTrainingJob"] is None
    for name, state in states.items():
        for _, value in _path_fields(state):
            for dotted in RUN_PATH.findall(value):
                if dotted.startswith(".onDemandTrainingJob.") and not spot:
                    continue
                if dotted.startswith(".rollback."):
                    continue  # only StartRollback reads it, for a rollback plan (next test)
                # And every $.run path a state reads exists (else: uncatchable States.Runtime)
                found = _resolve(document, dotted)
                if dotted.endswith((".hasInput", ".endpointExists")):
                    assert isinstance(found, bool), (name, dotted)
                if dotted.endswith((".pollSeconds", ".maxPolls")):
                    assert isinstance(found, int) and found > 0, (name, dotted)
                if dotted.endswith(".rolloutSeconds"):
                    assert isinstance(found, int) and found >= 0, (name, dotted)


def _reachable(states: dict[str, Any], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_targets(states[name]))
    return seen


@pytest.mark.parametrize("mode", ["endpoint", "batch"])
def test_a_rollback_plan_resolves_every_path_on_its_way(states: dict[str, Any], mode: str) -> None:
    # Given the plan of a rollback run (refit.registry.rollback), built by the code PrepareRun runs
    settings = Settings.from_env({**PLAN_ENV, "DEPLOYMENT_MODE": mode})
    target = RollbackTarget(
        package_arn="arn:aws:sagemaker:us-east-1:123456789012:model-package/refit-models/2",
        version=2,
        trained_by_run="s3-0123",
        image="image",
        model_data_url="s3://refit-data/models/s3-0123/output/model.tar.gz",
        environment={"SAGEMAKER_PROGRAM": "inference.py"},
        metadata={"features": "4"},
    )
    live = Champion("live", "s3://refit-data/models/live.tar.gz", "live", 4, "endpoint")
    plan = build_rollback_plan("manual-1", target, ChampionState(live, True), mode, settings)
    document = plan.to_document()
    # Then HasDataToTrain sends it to StartRollback, which skips training
    assert plan.status == document["status"] == "rollback"
    reachable = _reachable(states, "StartRollback")
    assert not {"Train", "TrainOnDemand", "EvaluateModels"} & reachable
    # And every $.run path a state on its way reads exists
    for name in sorted(reachable):
        for _, value in _path_fields(states[name]):
            for dotted in RUN_PATH.findall(value):
                found = _resolve(document, dotted)
                if dotted.endswith((".hasInput", ".endpointExists")):
                    assert isinstance(found, bool), (name, dotted)
    # And StartRollback hands CreateModel and RecordRun what a promotion would
    assert document["rollback"]["training"] == {"modelDataUrl": target.model_data_url}
    assert document["rollback"]["evaluation"]["decision"] == "promote"
