import pytest

import loaders
from loaders import registry


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_builtin_datasets_are_listed():
    names = loaders.list_datasets()
    assert {"shapes", "folder"} <= set(names) and names == sorted(names)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown dataset 'imagenette'.*folder.*shapes"):
        loaders.open_dataset("imagenette")


def test_duplicate_registration_raises(clean_registry):
    with pytest.raises(ValueError, match="already registered"):
        loaders.register_dataset("shapes", lambda root=None: None)
    loaders.register_dataset("mine", lambda root=None: "ok")
    with pytest.raises(ValueError, match="already registered"):
        loaders.register_dataset("other", lambda root=None: None, aliases=("mine",))


@pytest.mark.parametrize("name", ["", "Upper", "has space", "dots.no", 3])
def test_bad_names_raise(clean_registry, name):
    with pytest.raises(ValueError, match="dataset name"):
        loaders.register_dataset(name, lambda root=None: None)


def test_decorator_form_aliases_and_options(clean_registry):
    @loaders.register_dataset("toy", aliases=("toy-alias",))
    def toy(root=None, split="train", *, size=3):
        return (root, split, size)

    assert loaders.open_dataset("toy") == (None, "train", 3)
    assert loaders.open_dataset("toy-alias", "/data", "val", size=5) == ("/data", "val", 5)
    with pytest.raises(TypeError, match=r"does not accept option\(s\) \['colour'\].*allowed"):
        loaders.open_dataset("toy", colour="red")


def test_non_callable_is_rejected(clean_registry):
    with pytest.raises(TypeError, match="callable"):
        loaders.register_dataset("broken", 42)
