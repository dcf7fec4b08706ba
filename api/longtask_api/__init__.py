"""The longtask HTTP gateway (FastAPI): creates LongTasks and streams their progress."""
