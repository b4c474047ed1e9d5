"""RecordRun: the run record, its cost and the notification."""
