"""CleanupResources: what SageMaker resources nothing uses any more."""
