"""What gets seeded, as pure functions of the seed: the same seed, the same data.

Each index draws from its own `random.Random(f"{seed}:{index}")` (string seeds are
hashed with SHA-512, so this does not depend on PYTHONHASHSEED or the Python build),
so adding an index never changes another's documents. The vocabulary is small and
fixed on purpose: tests can search for "linen" or "teal" and know something matches.
"""

from __future__ import annotations

import random
from typing import Any

DEFAULT_SEED = 42
DOCS_PER_INDEX = 24
ACCOUNT_NAME = "hippodrome-seed-{seed}"

ADJECTIVES = ("classic", "modern", "rustic", "sleek", "cozy", "vintage", "bold", "airy")
COLORS = ("teal", "crimson", "ivory", "charcoal", "mustard", "sage", "navy", "coral")
MATERIALS = ("linen", "oak", "steel", "wool", "ceramic", "leather", "cotton", "walnut")
BRANDS = ("Northwind", "Fabrikam", "Contoso", "Tailspin", "Litware", "Proseware")
# index -> (category, nouns)
CATALOG: dict[str, tuple[str, tuple[str, ...]]] = {
    "seed-apparel": ("apparel", ("shirt", "jacket", "scarf", "sweater", "dress", "hat")),
    "seed-home": ("home", ("lamp", "chair", "rug", "vase", "table", "blanket")),
    "seed-kitchen": ("kitchen", ("mug", "kettle", "bowl", "skillet", "teapot", "platter")),
}
INDEXES = tuple(CATALOG)
PHRASES = ("made to last", "easy to care for", "a customer favourite", "limited run",
           "designed in house", "ships in two days")


def index_settings(index: str) -> dict[str, Any]:
    """What the index is created with in the cell (through the controller)."""
    return {"type": "structured", "seeded": True, "category": CATALOG[index][0]}


def documents(seed: int, index: str) -> list[dict[str, Any]]:
    category, nouns = CATALOG[index]
    rng = random.Random(f"{seed}:{index}")
    docs = []
    for n in range(DOCS_PER_INDEX):
        adjective, color = rng.choice(ADJECTIVES), rng.choice(COLORS)
        material, noun = rng.choice(MATERIALS), rng.choice(nouns)
        docs.append({
            "_id": f"{index}-{n:03d}",
            "title": f"{adjective.title()} {color} {material} {noun}",
            "description": f"A {adjective} {noun} in {color} {material}, "
                           f"{rng.choice(PHRASES)}.",
            "brand": rng.choice(BRANDS),
            "color": color,
            "material": material,
            "category": category,
            "price": rng.randrange(500, 50_000) / 100,
            "rating": rng.randint(1, 5),
            "inStock": rng.random() < 0.8,
            "tags": sorted(rng.sample((adjective, color, material, noun, category), 3)),
        })
    return docs


def admin_settings(seed: int, index: str) -> dict[str, Any]:
    """The ecom settings stored through admin_server (what the exporters then mirror)."""
    rng = random.Random(f"{seed}:{index}:settings")
    return {
        "searchableAttributes": ["title", "description", "brand", "tags"],
        "filterableAttributes": ["color", "material", "brand", "category", "inStock"],
        "sortableAttributes": ["price", "rating"],
        "defaultLimit": rng.choice((10, 20, 24)),
        "synonyms": {"sofa": ["couch"], rng.choice(COLORS): [rng.choice(COLORS)]},
        "seed": seed,
    }


def merchandising_rules(seed: int, index: str) -> list[dict[str, Any]]:
    """One pin and one bury per index, on real document ids and words from their titles."""
    rng = random.Random(f"{seed}:{index}:rules")
    docs = documents(seed, index)
    pinned, buried = rng.sample(docs, 2)
    return [
        {"ruleId": f"{index}-pin", "action": "pin", "documentId": pinned["_id"],
         "query": pinned["title"].split()[-1]},
        {"ruleId": f"{index}-bury", "action": "bury", "documentId": buried["_id"],
         "query": buried["title"].split()[-1]},
    ]
