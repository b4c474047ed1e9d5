"""StartRetrain's work: S3 events into the run queue, runs that ended, quarantine."""
