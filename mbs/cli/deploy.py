"""`mbs deploy k8s DIR`: the Kubernetes manifests generated from the contracts (the same
generator as `python -m mbs.dashboards.k8s`), or with --check whether DIR is up to date."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mbs.cli.common import say
from mbs.cli.exits import Failed
from mbs.dashboards.k8s import NAMESPACE, stale, write_all

app = typer.Typer(help="Deployment files generated from the contracts.", no_args_is_help=True)


@app.command("k8s")
def k8s(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Where base/ goes; overlays/ there is never touched (default: deploy/k8s).",
            show_default=False,
            file_okay=False,
        ),
    ] = Path("deploy/k8s"),
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Write nothing; exit 1 listing each file a regeneration would change.",
        ),
    ] = False,
    namespace: Annotated[
        str, typer.Option(help="The namespace it runs in; KEDA reaches Kafka by its full name.")
    ] = NAMESPACE,
) -> None:
    """Regenerate the Kustomize base (Strimzi Kafka, topics, users, a Deployment per unit and
    for the gateway, autoscaling, monitoring) from the contracts; prints each file written."""
    if check:
        differ = stale(directory, namespace=namespace)
        if differ:
            raise Failed(
                f"{len(differ)} files in {directory} differ from the contracts: "
                + ", ".join(differ)
                + f"; regenerate with `mbs deploy k8s {directory}`"
            )
        say(f"{directory} is up to date with the contracts")
        return
    for path in write_all(directory, namespace=namespace):
        print(path)
