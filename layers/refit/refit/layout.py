"""One place for the facts every part of refit shares.

Bucket prefixes, tag keys, SageMaker naming rules and service limits live here. Handlers, the
template's documentation, the training code contract and the local cloud all read these names;
tests assert the template and the ASL agree with them.
"""

from __future__ import annotations

import hashlib
import re

# --- Bucket layout --------------------------------------------------------------------------
# s3://<bucket>/
#   data/train/        new labelled CSV files land here; uploads trigger runs
#   data/validation/   held-out validation set used for early stopping (optional)
#   data/test/         held-out test set on which challenger and champion are scored (required)
#   data/rejected/     files refused by validation, with the reason in object metadata
#   batch/input/       records to score in batch mode
#   batch/output/      batch transform results, one prefix per run
#   models/            training job output: models/<job>/output/{model,output}.tar.gz
#   checkpoints/       per-run spot checkpoints (expired by a lifecycle rule)
#   code/              content-addressed sourcedir-<sha>.tar.gz of training/
#   runs/<run>/        what a run covered: manifest.json (keys, versions, ETags, rows, pinned
#                      copies), train.manifest (SageMaker's ManifestFile of the pinned copies)
#   runs/<run>/data/   the exact object versions the run validated, copied server-side by
#                      PrepareRun (same path relative to data/train/); the job reads only these,
#                      so a delete or an overwrite after PrepareRun cannot change what it trains on
#   runs/cumulative-manifest.json   every object version trained so far, one per key (a full
#                      retrain reuses these pinned copies); written only by EvaluateModels
#   tmp/               scratch objects (expired by a lifecycle rule)
TRAIN_PREFIX = "data/train/"
VALIDATION_PREFIX = "data/validation/"
TEST_PREFIX = "data/test/"
REJECTED_PREFIX = "data/rejected/"
BATCH_INPUT_PREFIX = "batch/input/"
BATCH_OUTPUT_PREFIX = "batch/output/"
MODELS_PREFIX = "models/"
CHECKPOINTS_PREFIX = "checkpoints/"
CODE_PREFIX = "code/"
RUNS_PREFIX = "runs/"
RUN_DATA_DIR = "data/"
CUMULATIVE_MANIFEST_KEY = f"{RUNS_PREFIX}cumulative-manifest.json"
TMP_PREFIX = "tmp/"

# Written last under a batch run's output prefix (batch/output/<run>/): the output is complete.
SUCCESS_MARKER = "_SUCCESS"

# Data files refit trains on. A name or folder starting with "_" or "." is not data: the job skips
# it, and so does every part of refit (the same tuple as refit_data.IGNORED_NAME_PREFIXES, the
# data contract's, which Lambdas without the training code cannot import; a test ties them).
DATA_EXTENSIONS = (".csv",)
IGNORED_NAME_PREFIXES = ("_", ".")


def is_ignored(relative_path: str) -> bool:
    """A path (under a channel's prefix) that is not data: a segment starts with ``_`` or ``.``
    (``.`` and ``..`` are a broken path instead); ``refit_data.is_ignored``'s rule."""
    return any(
        segment.startswith(IGNORED_NAME_PREFIXES) and segment not in (".", "..")
        for segment in relative_path.split("/")
    )


# --- Ownership -----------------------------------------------------------------------------
# Every SageMaker resource refit creates carries these tags. Cleanup deletes only resources whose
# TAG_STACK equals its own stack name: never by name prefix.
TAG_STACK = "refit:stack"
TAG_RUN = "refit:run"
TAG_ROLE = "refit:role"
# On the on-demand retry of a spot job whose capacity never came (the spot job has no such tag).
TAG_CAPACITY = "refit:capacity"
# That retry's job name is sagemaker_name(runId, ON_DEMAND_JOB_SUFFIX); the spot job's is
# sagemaker_name(runId).
ON_DEMAND_JOB_SUFFIX = "od"

# --- Training contract (shared with training/train.py, which cannot import this package) ----
CHANNEL_TRAIN = "train"
CHANNEL_VALIDATION = "validation"
CHANNEL_TEST = "test"
CHANNEL_TEST_RETAINED = "test_retained"  # older test data: the gate's forgetting check
CHANNEL_MODEL = "model"
# The champion's output.tar.gz, whose replay/ sample an incremental job trains on with the new data.
CHANNEL_REPLAY = "replay"
MODEL_FILE = "xgboost-model"
EVALUATION_FILE = "evaluation.json"
TRAINING_ENTRY_POINT = "train.py"
# refit's data contract: train.py reads its channels with it, PrepareRun checks uploads with it.
DATA_CONTRACT_MODULE = "refit_data.py"
INFERENCE_ENTRY_POINT = "inference.py"
# Every file of the training code: the entry points and the modules train.py imports. The one
# list: training/Makefile's RUNTIME_SCRIPTS must name these (tests/training/test_training_layer.py)
# and PrepareRun refuses a TRAINING_CODE_DIR that lacks any (refit.prepare_run.training_code).
TRAINING_MODULES = (
    TRAINING_ENTRY_POINT,
    "refit_checkpoints.py",
    DATA_CONTRACT_MODULE,
    "refit_distributed.py",
    "refit_errors.py",
    "refit_hyperparameters.py",
    "refit_incremental.py",
    "refit_scoring.py",
    INFERENCE_ENTRY_POINT,
)
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"

# --- Limits -------------------------------------------------------------------------------
SAGEMAKER_NAME_MAX = 63
EXECUTION_NAME_MAX = 80
STATE_PAYLOAD_MAX_BYTES = 256 * 1024
# Keys listed inline in a state or run record; the full list is in the run manifest in S3.
INLINE_KEYS_MAX = 50


def model_package_group_name(stack_name: str) -> str:
    """The stack's SageMaker Model Registry group (template.yaml: ``${AWS::StackName}-models``)."""
    return f"{stack_name}-models"


def run_prefix(run_id: str) -> str:
    """``runs/<run>/``: everything one run wrote about its data."""
    return f"{RUNS_PREFIX}{run_id}/"


def train_channel_prefix(run_id: str) -> str:
    """``runs/<run>/channel/train/``: the train channel's parts when the job has several hosts
    or reads in FastFile mode (refit.data.train_channel)."""
    return f"{run_prefix(run_id)}channel/{CHANNEL_TRAIN}/"


def pinned_data_key(run_id: str, key: str) -> str:
    """Where PrepareRun pins a validated ``data/train/<rel>`` version: ``runs/<run>/data/<rel>``."""
    if not key.startswith(TRAIN_PREFIX):
        raise ValueError(f"{key!r} is not under {TRAIN_PREFIX}")
    return f"{run_prefix(run_id)}{RUN_DATA_DIR}{key[len(TRAIN_PREFIX) :]}"


_NOT_ALLOWED_IN_SAGEMAKER_NAMES = re.compile(r"[^a-zA-Z0-9-]+")


def sagemaker_name(*parts: str) -> str:
    """A SageMaker resource name from free-form parts.

    SageMaker names are 1-63 characters of ``[a-zA-Z0-9](-*[a-zA-Z0-9])*``: no ``_`` or ``.``.
    When the cleaned name is too long, it is cut and a short hash of the full name keeps it
    unique, so two long execution names never map to the same job name.
    """
    raw = "-".join(p for p in parts if p)
    cleaned = _NOT_ALLOWED_IN_SAGEMAKER_NAMES.sub("-", raw).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    if not cleaned:
        raise ValueError(f"no usable characters for a SageMaker name in {parts!r}")
    if len(cleaned) <= SAGEMAKER_NAME_MAX:
        return cleaned
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    head = cleaned[: SAGEMAKER_NAME_MAX - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"
