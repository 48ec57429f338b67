"""The `endpoint:` block of a scenario tenant: how to start the server and the load it gets."""
from __future__ import annotations

from typing import Optional

from pydantic import Field

from tenancy.core.validation import Strict
from tenancy.serving.config import SLOs, WorkloadConfig


class EndpointConfig(Strict):
    """An OpenAI-compatible server the harness starts as the tenant's process. `{port}` in the
    command, url and env values is replaced by a free port chosen at start."""

    command: list[str] = Field(min_length=1, description="argv that starts the server, e.g. "
                               "[python, -m, vllm.entrypoints.openai.api_server, --port, '{port}', ...]")
    url: str = Field("http://127.0.0.1:{port}/v1", description="the API base: GET {url}/models, POST {url}/completions")
    ready_timeout_s: float = Field(600.0, gt=0, description="how long GET {url}/models may take to answer")
    env: dict[str, str] = Field(default_factory=dict, description="added to the server's environment")
    served_model: Optional[str] = Field(None, description="the request's `model`; default: the first id of /models")
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    slos: SLOs = Field(default_factory=SLOs)

    def filled(self, port: int) -> tuple[list[str], str, dict[str, str]]:
        """Command, url and env with the port in place."""
        fill = lambda s: s.replace("{port}", str(port))  # noqa: E731
        return [fill(a) for a in self.command], fill(self.url).rstrip("/"), {k: fill(v) for k, v in self.env.items()}
