"""Packages are grouped into layers by the exact set of images that need them."""

import pytest

from fxstack.image.layers import group_by_users, layers_for

pytestmark = pytest.mark.unit


def test_classes_by_exact_image_set():
    needs = {"api": {"numpy", "pandas", "fastapi"}, "air": {"numpy", "pandas", "airflow"},
             "ml": {"numpy", "mlflow"}}
    classes = dict((who, items) for who, items in group_by_users(needs, 60))
    assert classes[frozenset({"api", "air", "ml"})] == ["numpy"]
    assert classes[frozenset({"api", "air"})] == ["pandas"]
    assert classes[frozenset({"api"})] == ["fastapi"]
    # every image gets exactly what it needs, each item in one layer only
    for image, items in needs.items():
        got = [i for layer in layers_for(image, list(classes.items())) for i in layer]
        assert sorted(got) == sorted(items)


def test_widest_classes_come_first():
    needs = {"a": {"x", "y"}, "b": {"x", "z"}}
    order = [who for who, _ in group_by_users(needs, 60)]
    assert order[0] == frozenset({"a", "b"})


def test_merge_when_an_image_passes_the_layer_limit():
    # 5 images; image "big" shares a distinct item with every subset -> many classes
    import itertools

    others = ["a", "b", "c", "d"]
    needs = {"big": set(), **{o: set() for o in others}}
    n = 0
    for r in range(0, 5):
        for subset in itertools.combinations(others, r):
            item = f"item{n}"
            n += 1
            needs["big"].add(item)
            for o in subset:
                needs[o].add(item)
    classes = group_by_users(needs, 6)
    for image in needs:
        layers = layers_for(image, classes)
        assert len(layers) <= 6
        got = {i for layer in layers for i in layer}
        assert needs[image] <= got  # nothing an image needs is lost by merging
