"""A real serving engine (vLLM, SGLang, ...) as a tenant (`task: endpoint`): the tenant process
starts the engine's OpenAI-compatible server with the sharing mode's environment, waits for it,
and drives it with the same open-loop workload and metric definitions as our own `serve` tenants.
config.py: the `endpoint:` block; process.py: the server's process group; client.py: the async
streaming client; tenant.py: the measured loop."""
