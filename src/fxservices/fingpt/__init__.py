"""FinGPT sentiment service: processor.py (model), service.py (FastAPI app on 8001),
tiny.py (a tiny random LLaMA + LoRA adapter for tests)."""
