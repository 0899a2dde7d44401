"""Journey definitions: the model and its expression language, the checks against the
contracts (loading YAML), and the store that shares versions over `mbs.journeys.defs`."""

from gateway.definition.checks import JOURNEYS_DIR, check, load_all, load_file, parse
from gateway.definition.expressions import Condition, parse_ref
from gateway.definition.model import JourneyDefinition, StepDefinition

__all__ = [
    "JOURNEYS_DIR",
    "Condition",
    "JourneyDefinition",
    "StepDefinition",
    "check",
    "load_all",
    "load_file",
    "parse",
    "parse_ref",
]
