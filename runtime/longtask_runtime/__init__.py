"""Shared I/O the components use alike: the Kubernetes client layer, Redis connections, Celery sends.

It may talk to Kubernetes, Redis and Celery, but it decides nothing about tasks (that is
the components' job) and imports no component (api, operator, worker, cli, devtools).
"""
