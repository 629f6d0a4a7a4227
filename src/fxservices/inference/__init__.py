"""FX inference API: `fxservices.inference.app:app` (gunicorn + uvicorn workers, port 8000)."""
