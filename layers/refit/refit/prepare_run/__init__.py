"""PrepareRun: from an execution input to a RunPlan (warm start, holdout, training code)."""
