"""The top level is small; every name that used to live there still imports, with a warning naming its home."""

import importlib

import pytest

import bert4rec_hf


def test_the_top_level_holds_the_main_names_only():
    assert len(bert4rec_hf.__all__) <= 18
    for name in bert4rec_hf.__all__:
        assert getattr(bert4rec_hf, name) is not None, name
    assert not set(bert4rec_hf.__all__) & set(bert4rec_hf.MOVED)


@pytest.mark.parametrize("name", sorted(bert4rec_hf.MOVED))
def test_a_moved_name_still_imports_with_a_warning_naming_its_home(name):
    home = bert4rec_hf.MOVED[name]
    with pytest.warns(FutureWarning, match=f"import it from {home}"):
        moved = getattr(bert4rec_hf, name)
    assert moved is getattr(importlib.import_module(home), name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Bert4RecMagic'"):
        bert4rec_hf.Bert4RecMagic  # noqa: B018
