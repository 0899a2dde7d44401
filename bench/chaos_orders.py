"""What a chaos run asks for: orders that complete, orders that fail for each business reason
the units have (and are compensated), and returns of orders that completed.

The failing inputs follow the units' own rules (services/*/handlers.py): a US postcode 99...
neither carrier serves, a `fraud-` customer is blocked, a card ending 0000 is declined, the
descaler is out of stock, the grinder runs out (20 in stock), 90 bags of beans are over the
2000.00 charge limit, and `cust-optout` cannot be told the order shipped (the last step)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

ORDER = "order-to-delivery"
RETURN = "return-and-refund"
RETURN_SHARE = 0.2  # of submissions, once there are completed orders to return
# variant -> (weight, what it changes in a good order); a callable value is drawn per order
VARIANTS: dict[str, tuple[int, dict[str, Any]]] = {
    "happy": (40, {}),
    "abroad": (10, {"country": ("AT", "CH", "FR", "NL"), "postcode": ("1010", "8001", "75001")}),
    "unshippable": (7, {"country": "US", "postcode": "99501"}),
    "fraud_blocked": (7, {"customer_id": "fraud-{n}"}),
    "card_declined": (7, {"card_token": "tok-99990000"}),
    "out_of_stock": (5, {"sku": "descaler-500ml"}),
    "scarce": (8, {"sku": "grinder-c40"}),
    "over_limit": (6, {"quantity": 90}),
    "opted_out": (7, {"customer_id": "cust-optout"}),
}


@dataclass
class OrderMaker:
    """Seeded inputs: the same seed asks for the same orders in the same order."""

    rng: random.Random
    uid: str
    made: int = 0
    returnable: list[dict[str, Any]] = field(default_factory=list)

    def next_input(self) -> tuple[str, str, dict[str, Any]]:
        """(journey, variant, body) of the next submission."""
        if self.returnable and self.rng.random() < RETURN_SHARE:
            body = self.returnable.pop(self.rng.randrange(len(self.returnable)))
            return RETURN, "return", body
        variant = self.rng.choices(list(VARIANTS), [w for w, _ in VARIANTS.values()])[0]
        return ORDER, variant, self.order(variant)

    def order(self, variant: str = "happy") -> dict[str, Any]:
        self.made += 1
        body: dict[str, Any] = {
            "order_id": f"chaos-{self.uid}-{self.made}",
            "sku": "espresso-beans-1kg",
            "quantity": self.rng.randint(1, 3),
            "customer_id": f"cust-{self.rng.randint(1, 40)}",
            "country": "DE",
            "postcode": "10115",
            "card_token": "tok-4242",
        }
        for key, value in VARIANTS[variant][1].items():
            if isinstance(value, tuple):
                value = self.rng.choice(value)  # noqa: PLW2901
            body[key] = value.format(n=self.made) if isinstance(value, str) else value
        return body

    def completed(self, run: dict[str, Any]) -> None:
        """A completed order may be returned: refund its charge, release its reservation."""
        outputs = {s["id"]: s.get("output") or {} for s in run.get("steps", [])}
        self.returnable.append(
            {
                "charge_id": outputs["pay"]["charge_id"],
                "reservation_id": outputs["reserve"]["reservation_id"],
                "customer_id": run["input"]["customer_id"],
                "order_id": run["input"]["order_id"],
            }
        )
