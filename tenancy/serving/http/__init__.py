"""`tenancy serve --http`: our engine behind an OpenAI-compatible HTTP server (vLLM's wire format).

protocol (request/response models), bridge (the engine stepping in one thread, requests from the
event loop), app (FastAPI routes, errors, metrics), server (build, bind, run uvicorn).
"""
