"""The data plane: a lean ASGI app under gunicorn + uvicorn workers. No Django on the hot path."""
