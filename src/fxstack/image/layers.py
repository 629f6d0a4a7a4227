"""Which packages share a layer: grouped by the exact set of images that need them."""

from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Mapping, TypeVar

T = TypeVar("T", bound=Hashable)


def group_by_users(needs: Mapping[str, set[T]], max_layers: int) -> list[tuple[frozenset[str], list[T]]]:
    """Partition items into classes keyed by the set of images that use them.

    `needs` maps image -> items. Classes used by more images come first, so that images
    sharing a class tend to share the layers below it too (Docker stores a layer once per
    parent chain). If an image would carry more than `max_layers` package layers, its
    smallest classes are merged (see `_fit`).
    """
    users: dict[T, set[str]] = defaultdict(set)
    for image, items in needs.items():
        for item in items:
            users[item].add(image)
    classes: dict[frozenset[str], list[T]] = defaultdict(list)
    for item, who in users.items():
        classes[frozenset(who)].append(item)
    ordered = sorted(classes.items(), key=lambda kv: (-len(kv[0]), sorted(kv[0])))
    ordered = [(who, sorted(items, key=str)) for who, items in ordered]
    return _fit(ordered, needs, max_layers)


def _fit(ordered, needs, max_layers):
    """Merge classes while any image has more than `max_layers` of them.

    The smallest class of the most crowded image is merged into another class of that image,
    preferably one whose users include all of its users. The merged layer then also reaches
    images that did not ask for some of its items: bytes, never a missing package.
    """
    def count(image):
        return sum(1 for who, _ in ordered if image in who)

    while any(count(img) > max_layers for img in needs):
        crowded = max(needs, key=count)
        mine = [(i, who, items) for i, (who, items) in enumerate(ordered) if crowded in who]
        mine.sort(key=lambda t: len(t[2]))
        i, who, items = mine[0]
        # merge into the smallest other class of this image whose users include `who`
        target = next((j for j, w2, _ in mine[1:] if w2 >= who), None)
        if target is None:
            target = mine[1][0]
        merged_who = ordered[target][0] | who
        merged = (merged_who, sorted(ordered[target][1] + items, key=str))
        ordered = [c for k, c in enumerate(ordered) if k not in (i, target)] + [merged]
        ordered.sort(key=lambda kv: (-len(kv[0]), sorted(kv[0])))
    return ordered


def layers_for(image: str, classes: list[tuple[frozenset[str], list[T]]]) -> list[list[T]]:
    return [items for who, items in classes if image in who]
