"""The one cache helper (vlmrm.runtime.cache): keyed, atomic, a damaged file rebuilt with a warning."""

from __future__ import annotations

import warnings

import pytest
import torch

from vlmrm.errors import VLMRMWarning
from vlmrm.runtime.cache import cached, read_cache, write_cache

KEY = {"model": "vlmrm-tiny", "data": "/d/ann.json", "split": "test"}


def _entries() -> dict:
    g = torch.Generator().manual_seed(0)
    return {"features": torch.randn(5, 3, generator=g), "tokens": [[1, 2], [3]], "rows": [torch.arange(4)]}


def test_what_is_written_reads_back_under_its_key_only(tmp_path):
    path = tmp_path / "c.pt"
    entries = _entries()
    write_cache(path, KEY, entries)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary left
    back = read_cache(path, dict(KEY))
    assert set(back) == {"features", "tokens", "rows"}
    assert torch.equal(back["features"], entries["features"]) and back["tokens"] == [[1, 2], [3]]
    assert torch.equal(back["rows"][0], torch.arange(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # another key or no file: silent
        assert read_cache(path, {**KEY, "split": "val"}) is None
        assert read_cache(tmp_path / "none.pt", KEY) is None


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not_a_dict", "missing_entry"])
def test_a_damaged_cache_is_rebuilt_after_one_warning_naming_it(tmp_path, damage):
    path = tmp_path / "features.pt"
    write_cache(path, KEY, _entries())
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "garbage":
        path.write_bytes(b"\x00not a torch file" * 10)
    elif damage == "not_a_dict":
        torch.save([1, 2, 3], path)
    else:
        torch.save({"key": KEY, "features": torch.zeros(2)}, path)
    calls = []

    def build() -> dict:
        calls.append(1)
        return {"features": torch.ones(2), "tokens": [], "rows": torch.zeros(0)}

    with pytest.warns(VLMRMWarning) as caught:
        got = cached(path, KEY, build, required=("features", "tokens", "rows"))
    assert len(caught) == 1 and str(path) in str(caught[0].message)
    assert "is damaged" in str(caught[0].message) and "computing it again" in str(caught[0].message)
    assert calls == [1] and torch.equal(got["features"], torch.ones(2))
    # the rebuilt file is sound: the next run reads it without building
    assert torch.equal(cached(path, KEY, lambda: pytest.fail("rebuilt twice"))["features"], torch.ones(2))
