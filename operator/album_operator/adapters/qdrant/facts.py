"""What ``album-operator status`` asks Qdrant: do the named collections exist, how many points
they hold, where the aliases point. Read-only, with a short timeout: a CLI must not hang on an
unreachable server."""

from __future__ import annotations

import ssl
import warnings
from typing import Any

from qdrant_client import QdrantClient

from album_operator.adapters.qdrant.connection import ConnectionSettings, redacted_error
from album_operator.adapters.redaction import redact, register_secret
from album_operator.core.statusview import CollectionFacts, QdrantFacts, QdrantQuestion

FACTS_TIMEOUT_S = 5


def read_facts(settings: ConnectionSettings, question: QdrantQuestion) -> QdrantFacts:
    """Qdrant's answer to ``question``; a connection problem is one line in ``problem``."""
    where = redact(settings.describe())
    if settings.is_embedded:
        return QdrantFacts(where="the embedded engine", problem=(
            "its data belongs to the operator process, so only the figures in status above "
            "are known; give a server with --qdrant-url or --qdrant-secret to look inside"))
    register_secret(settings.api_key)
    try:
        with warnings.catch_warnings():  # qdrant-client warns about an API key over http
            warnings.simplefilter("ignore")
            client = QdrantClient(url=settings.url, api_key=settings.api_key,
                                  timeout=FACTS_TIMEOUT_S, check_compatibility=False,
                                  **_tls(settings))
        try:
            return _ask(client, where, question)
        finally:
            client.close()
    except Exception as exc:  # every way a server can fail a read-only look is one line
        return QdrantFacts(where=where, problem=f"unreachable: {redacted_error(exc)}")


def _tls(settings: ConnectionSettings) -> dict[str, Any]:
    return {"verify": ssl.create_default_context(cadata=settings.ca_pem)} if settings.ca_pem else {}


def _ask(client: QdrantClient, where: str, question: QdrantQuestion) -> QdrantFacts:
    aliases = {alias.alias_name: alias.collection_name
               for alias in client.get_aliases().aliases}
    collections = [_collection(client, name) for name in question.collections]
    return QdrantFacts(where=where,
                       aliases={name: aliases.get(name, "") for name in question.aliases},
                       collections=collections)


def _collection(client: QdrantClient, name: str) -> CollectionFacts:
    if not client.collection_exists(name):
        return CollectionFacts(name=name, exists=False)
    info = client.get_collection(name)
    return CollectionFacts(name=name, exists=True, points=info.points_count,
                           health=str(info.status.value))
