"""What a tenant's model is, wherever it comes from: the zoo's entries and folder models alike."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["encoder", "decoder"]
Size = Literal["full", "tiny"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: Kind
    family: str  # transformers model_type
    config: dict[str, Any]
    tiny: dict[str, Any]  # overrides that shrink the model
    hub_id: str  # where the real weights live, for `weights: <id>` with a local cache
    path: str | None = None  # a folder model: the directory holding its config.json

    @property
    def max_positions(self) -> int:
        """Tokens the model can attend over (tiny variants keep the full model's)."""
        c = self.config
        return int(c.get("max_position_embeddings") or c.get("n_positions") or c.get("n_ctx") or 2**31 - 1)

    def vocab_size(self, size: Size = "full") -> int:
        """From the config's own fields where it names it (no transformers import: an endpoint
        tenant's client needs nothing else of the model), else from the built config."""
        fields = {**self.config, **(self.tiny if size == "tiny" else {})}
        if isinstance(fields.get("vocab_size"), int):
            return fields["vocab_size"]
        return int(self.make_config(size).vocab_size)

    def make_config(self, size: Size = "full"):
        from transformers import AutoConfig

        if self.path is not None:  # a folder model has no tiny variant (validation refuses it)
            return AutoConfig.from_pretrained(self.path, local_files_only=True)
        kwargs = dict(self.config)
        if size == "tiny":
            kwargs.update(self.tiny)
        return AutoConfig.for_model(self.family, **kwargs)


class UnknownModel(ValueError):
    pass
