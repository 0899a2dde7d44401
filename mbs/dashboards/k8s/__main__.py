"""`python -m mbs.dashboards.k8s DIRECTORY [--check] [--namespace NS]` writes the Kubernetes
base under DIRECTORY/base (the checkout keeps it in deploy/k8s); `--check` only compares. The
directory is never implied, as for `python -m mbs.dashboards`."""

from mbs.dashboards.k8s import main

if __name__ == "__main__":
    raise SystemExit(main())
