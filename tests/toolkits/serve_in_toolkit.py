"""Answer requests with a user module inside the XGBoost image's real serving toolkit.

Runs in the toolkit's own venv (`make toolkit-venv`), not the dev venv. The module is served
the way aws/sagemaker-xgboost-container ``serving.py`` does for script mode (``main`` and
``_user_module_transformer``, mirrored below), then each request goes through Flask's test
client: the same Worker app, Transformer and Response code the image runs behind gunicorn. The
image's defaults for missing input/predict/output functions live in sagemaker_xgboost_container
(not on PyPI): a module served here defines transform_fn or all three.

usage: python serve_in_toolkit.py MODULE_DIR MODULE_NAME MODEL_DIR < requests.json > answers.json
requests: [{"body": str (latin-1 bytes), "content_type": str | null, "accept": str | null}]
answers:  [{"status": int, "content_type": str, "body": str (latin-1 bytes)}]
SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, if set, is the model's environment variable.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path


def main() -> int:
    module_dir, module_name, model_dir = sys.argv[1:4]
    # _env reads these at import time: the model dir is $SAGEMAKER_BASE_DIR/model.
    base = Path(model_dir).parent
    os.environ["SAGEMAKER_BASE_DIR"] = str(base)
    if Path(model_dir) != base / "model":
        raise SystemExit("MODEL_DIR must be named model (the toolkit's <base>/model)")
    sys.path.insert(0, module_dir)

    from sagemaker_containers.beta.framework import transformer, worker

    user_module = importlib.import_module(module_name)
    app = worker.Worker(
        transform_fn=user_module_transformer(transformer, user_module).transform,
        module_name=module_name,
    )
    client = app.test_client()
    answers = []
    for request in json.load(sys.stdin):
        headers = {}
        if request.get("content_type"):
            headers["Content-Type"] = request["content_type"]
        if request.get("accept"):
            headers["Accept"] = request["accept"]
        response = client.post(
            "/invocations", data=request["body"].encode("latin-1"), headers=headers
        )
        answers.append(
            {
                "status": response.status_code,
                "content_type": response.headers.get("Content-Type", ""),
                "body": response.get_data().decode("latin-1"),
            }
        )
    json.dump(answers, sys.stdout)
    return 0


def user_module_transformer(transformer, user_module):  # type: ignore[no-untyped-def]
    """serving.py ``_user_module_transformer``: transform_fn, or the three functions."""
    model_fn = getattr(user_module, "model_fn", transformer.default_model_fn)
    input_fn = getattr(user_module, "input_fn", None)
    predict_fn = getattr(user_module, "predict_fn", None)
    output_fn = getattr(user_module, "output_fn", None)
    transform_fn = getattr(user_module, "transform_fn", None)
    if transform_fn and (input_fn or predict_fn or output_fn):
        raise SystemExit(
            "Cannot use transform_fn implementation with input_fn, predict_fn, and/or output_fn"
        )
    if transform_fn is not None:
        served = transformer.Transformer(model_fn=model_fn, transform_fn=transform_fn)
    else:
        if not (input_fn and predict_fn and output_fn):
            raise SystemExit("define transform_fn, or input_fn, predict_fn and output_fn")
        served = transformer.Transformer(
            model_fn=model_fn, input_fn=input_fn, predict_fn=predict_fn, output_fn=output_fn
        )
    served.initialize()
    return served


if __name__ == "__main__":
    sys.exit(main())
