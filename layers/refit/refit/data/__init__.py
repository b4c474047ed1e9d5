"""What a run trains on: the data contract's checks, rejected files, pinned and trained data."""
