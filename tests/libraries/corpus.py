"""One small corpus, written the way each library stores documents.

Help-desk and catalogue articles about a handful of topics: every topic has more articles
than the suite's rerank window (``WINDOW``), so a query's first pages cross the window's
edge, and the articles differ enough that the model reorders them.
"""

from __future__ import annotations

from typing import Any

#: The rerank window of the suite's sidecars: smaller than a query's matches, so that pages
#: cross its edge.
WINDOW = 10

TOPICS = [
    ("library card", "renew", "borrow books with it, renew it online or at the desk"),
    ("password", "reset", "change it, reset a forgotten one, unlock the account"),
    ("printer", "queue", "release jobs, clear a jam, print in colour"),
    ("wifi", "access", "join the network, fix a dropped connection, guest access"),
    ("room", "booking", "reserve a study room, cancel it, extend the booking"),
]
ANGLES = [
    "A step-by-step guide",
    "Frequently asked questions",
    "What to do when it fails",
    "Rules and fees",
    "For new students",
    "For staff and visitors",
    "Troubleshooting checklist",
    "Opening hours and contacts",
    "Accessibility options",
]


def articles() -> list[dict[str, Any]]:
    """45 articles: five topics, nine angles each."""
    out = []
    for t, (topic, verb, detail) in enumerate(TOPICS):
        for a, angle in enumerate(ANGLES):
            n = t * len(ANGLES) + a
            title = f"{angle}: {topic} {verb}" if a % 2 else f"{topic.title()} - {angle.lower()}"
            body = (
                f"{angle} about the {topic}. You can {detail}. "
                f"{'Ask the help desk' if a % 3 else 'See the catalogue'} about the {topic} "
                f"{verb}; article {n}."
            )
            category = ["library", "it", "facilities"][n % 3]
            out.append(
                {"id": str(n), "title": title, "body": body, "category": category, "year": 2000 + n}
            )
    return out


def plain_mapping() -> dict[str, Any]:
    """Articles as a frontend's index holds them (Search UI, Searchkit, elasticsearch.dsl)."""
    return {
        "properties": {
            "title": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "body": {"type": "text"},
            "category": {"type": "keyword"},
            "year": {"type": "integer"},
            "title_sayt": {"type": "search_as_you_type"},
            "suggest": {"type": "completion"},
        }
    }


def plain_docs() -> list[dict[str, Any]]:
    return [
        {**a, "title_sayt": a["title"], "suggest": a["title"]}
        for a in articles()  # the id stays in the source too: Search UI shows it
    ]
