"""refit's local cloud: the whole application on one machine, without AWS or Docker.

moto (on 127.0.0.1) emulates the AWS APIs; :mod:`local_cloud.sagemaker` really runs what the
SageMaker API asks for (training subprocesses, HTTP endpoints, batch transform).
"""
