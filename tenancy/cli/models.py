"""`tenancy models [MODEL]...`: the zoo, and what is derived from a named folder's config."""
from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from tenancy.core.errors import TenancyError


@click.command("models")
@click.argument("names", nargs=-1, metavar="[MODEL]...")
def models_cmd(names: tuple[str, ...]) -> None:
    """List the model zoo with parameter counts and weight memory; each MODEL named (a folder
    holding config.json, or a model id in the local Hugging Face cache) is added, its kind,
    positions and size derived from its config."""
    from tenancy.models import zoo

    try:
        extra = [zoo.get(n) for n in names]
    except zoo.UnknownModel as err:
        raise TenancyError(str(err)) from None
    table = Table(title="tenancy models")
    numeric = ("params", "fp16 weights", "tiny params", "positions")
    for col in ("model", "kind", "family", *numeric, "hub id / folder"):
        table.add_column(col, justify="right" if col in numeric else "left")
    specs = [*zoo.ZOO.values(), *extra]
    for spec in specs:
        n = zoo.count_params(spec.name)
        tiny = "-" if spec.path else f"{zoo.count_params(spec.name, 'tiny') / 1e3:,.0f} k"
        table.add_row(spec.name, spec.kind, spec.family, f"{n / 1e6:,.1f} M",
                      f"{n * zoo.DTYPE_BYTES['float16'] / 2**30:.2f} GiB", tiny, f"{spec.max_positions:,}",
                      spec.path or spec.hub_id)
    longest = max(len(str(s.path or s.hub_id)) for s in specs)
    Console(width=max(200, 120 + longest)).print(table)  # a folder's path is never cut short
