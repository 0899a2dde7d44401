"""Unit services: one package per unit, each its own process (`mbs run unit NAME`)."""

# Where each unit serves /healthz, /readyz and /metrics (MBS_UNIT_PORT overrides);
# deploy/prometheus scrapes these.
PORTS: dict[str, int] = {
    "pricing": 9101,
    "inventory": 9102,
    "payments": 9103,
    "fraud": 9104,
    "shipping": 9105,
    "notifications": 9106,
    "fastship": 9201,
    "paylater": 9202,
}
