"""longtask's Celery worker: the app, the task SDK and the built-in example tasks."""
