"""The models: the champion the endpoint serves, the Model Registry lineage, rollback."""
