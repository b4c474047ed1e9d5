"""The ``refit`` command line and the demo: clients of a deployed stack, on AWS or on the local
cloud, outside both the Lambda layer (``layers/refit/refit``, domain code only) and the emulator
(``local_cloud``, which imports nothing from refit).

- :mod:`.cli`: ``refit start|status|runs|cost|approve|rollback|local up`` (the console script);
- :mod:`.scenario`: refit's whole loop, step by step, against a local cloud, checked as it goes;
- :mod:`.demo`: ``make demo`` (``python -m refit_cli.demo``) prints that scenario's progress.
"""
