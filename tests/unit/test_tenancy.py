"""Who may read or write a collection: decided from its owner stamp and the owner's grants."""

from __future__ import annotations

import pytest

from album_operator.core.collections import OWNER_KIND, OWNER_REF, OWNER_UID
from album_operator.core.tenancy import (
    AccessDecision,
    Grant,
    Need,
    OwnerFacts,
    OwnerStamp,
    decide_access,
)

A_COLLECTION = OwnerStamp("AlbumCollection", "tenant-a", "album-2024", "uid-a")
A_MASTER = OwnerStamp("MasterMerge", "tenant-a", "master", "uid-m")
LIVE_A = OwnerFacts("uid-a")
LIVE_M = OwnerFacts("uid-m")
SHARED_READ_B = OwnerFacts("uid-a", (Grant("tenant-b", "Read"),))
SHARED_RW_B = OwnerFacts("uid-a", (Grant("tenant-c", "ReadWrite"), Grant("tenant-b",
                                                                         "ReadWrite")))


@pytest.mark.parametrize(("namespace", "stamp", "owner", "need", "allowed", "reason",
                          "message"), [
    ("tenant-a", A_COLLECTION, LIVE_A, "Read", True, "Owned",
     "collection album_2024 belongs to tenant-a"),
    ("tenant-a", A_COLLECTION, LIVE_A, "Write", True, "Owned",
     "collection album_2024 belongs to tenant-a"),
    ("tenant-a", A_MASTER, LIVE_M, "Read", True, "Owned",
     "collection album_2024 belongs to tenant-a"),
    ("tenant-b", A_COLLECTION, LIVE_A, "Read", False, "OwnedByAnotherNamespace",
     "collection album_2024 belongs to namespace tenant-a, which does not share it with "
     "tenant-b for reading"),
    ("tenant-b", A_COLLECTION, LIVE_A, "Write", False, "OwnedByAnotherNamespace",
     "collection album_2024 belongs to namespace tenant-a, which does not share it with "
     "tenant-b for writing"),
    ("tenant-b", A_COLLECTION, SHARED_READ_B, "Read", True, "Granted",
     "collection album_2024 is shared with tenant-b by namespace tenant-a"),
    ("tenant-b", A_COLLECTION, SHARED_READ_B, "Write", False, "OwnedByAnotherNamespace",
     "collection album_2024 belongs to namespace tenant-a, which does not share it with "
     "tenant-b for writing"),
    ("tenant-c", A_COLLECTION, SHARED_READ_B, "Read", False, "OwnedByAnotherNamespace",
     "collection album_2024 belongs to namespace tenant-a, which does not share it with "
     "tenant-c for reading"),
    ("tenant-b", A_COLLECTION, SHARED_RW_B, "Write", True, "Granted",
     "collection album_2024 is shared with tenant-b by namespace tenant-a"),
    ("tenant-a", None, None, "Read", False, "NotOwned",
     "collection album_2024 is not owned by any AlbumCollection or MasterMerge; adopt it "
     "with an AlbumCollection in tenant-a to read it"),
    ("tenant-a", OwnerStamp("EdgeSnapshotPolicy", "tenant-a", "p", "u"), None, "Write", False,
     "NotOwned", "collection album_2024 is not owned by any AlbumCollection or MasterMerge; "
     "adopt it with an AlbumCollection in tenant-a to write to it"),
    ("tenant-a", A_COLLECTION, None, "Read", False, "OwnerGone",
     "collection album_2024 carries the owner stamp of a resource in namespace tenant-a "
     "that no longer exists"),
    ("tenant-a", A_COLLECTION, OwnerFacts("uid-recreated"), "Read", False, "OwnerGone",
     "collection album_2024 carries the owner stamp of a resource in namespace tenant-a "
     "that no longer exists"),
    ("tenant-b", A_COLLECTION, OwnerFacts(None, (Grant("tenant-b", "ReadWrite"),)), "Read",
     False, "OwnerGone", "collection album_2024 carries the owner stamp of a resource in "
     "namespace tenant-a that no longer exists"),
])
def test_access_follows_the_owner_and_its_grants(
        namespace: str, stamp: OwnerStamp | None, owner: OwnerFacts | None, need: Need,
        allowed: bool, reason: str, message: str) -> None:
    assert decide_access(namespace, "album_2024", stamp, owner, need) == AccessDecision(
        allowed, reason, message)


@pytest.mark.parametrize(("metadata", "expected"), [
    ({OWNER_KIND: "AlbumCollection", OWNER_REF: "a/b", OWNER_UID: "u"},
     OwnerStamp("AlbumCollection", "a", "b", "u")),
    ({OWNER_KIND: "AlbumCollection", OWNER_REF: "a/b"}, None),
    ({OWNER_KIND: "AlbumCollection", OWNER_REF: "a/b", OWNER_UID: ""}, None),
    ({OWNER_KIND: "", OWNER_REF: "a/b", OWNER_UID: "u"}, None),
    ({OWNER_KIND: "AlbumCollection", OWNER_REF: "nonamespace", OWNER_UID: "u"}, None),
    ({OWNER_KIND: "AlbumCollection", OWNER_REF: "/b", OWNER_UID: "u"}, None),
    ({OWNER_KIND: 3, OWNER_REF: "a/b", OWNER_UID: "u"}, None),
    ({}, None),
])
def test_owner_stamps_are_read_only_when_whole(metadata: dict[str, object],
                                               expected: OwnerStamp | None) -> None:
    assert OwnerStamp.from_metadata(metadata) == expected
