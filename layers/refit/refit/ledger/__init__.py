"""DynamoDB: run records, the champion pointer, the run queue and lock."""
