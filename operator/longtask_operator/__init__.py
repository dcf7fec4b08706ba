"""The longtask operator (Kopf): dispatches LongTasks to Celery and keeps their status true."""
