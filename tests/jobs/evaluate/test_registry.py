"""The model registry: plain names, the ``hybrid:<spec>`` family and the errors that name the bad part."""

from __future__ import annotations

import pytest

from jobs.blend.evaluate_model import SWEEP, parse_variant
from jobs.evaluate.models import MODELS, resolve
from recsys.config import BlendConfig


def test_spec_sets_each_named_part_and_keeps_the_rest():
    base = BlendConfig()
    got = parse_variant("cf0.5-knn2-ct0-pop0.25-cap3-rank", base)
    assert (got.weight_cf, got.weight_itemknn, got.weight_content, got.weight_popular) == (0.5, 2.0, 0.0, 0.25)
    assert got.max_per_category == 3
    assert got.normalization == "rank"
    assert got.page_size == base.page_size and got.top_n == base.top_n


def test_nocap_turns_the_diversity_cap_off():
    assert parse_variant("knn1-nocap", BlendConfig()).max_per_category == 0


@pytest.mark.parametrize("spec", ["cfx", "knn-1", "foo1", "cap", ""])
def test_bad_spec_names_the_part(spec):
    with pytest.raises(ValueError, match="cannot read"):
        resolve(f"hybrid:{spec}")


def test_resolve_plain_names_sweep_names_and_any_spec():
    assert resolve("als") is MODELS["als"]
    for name in SWEEP:
        assert resolve(f"hybrid:{name}") is MODELS[f"hybrid:{name}"]
    assert callable(resolve("hybrid:cf0.7-knn1.3"))
    with pytest.raises(ValueError, match="unknown model 'nosuch'.*hybrid:<spec>"):
        resolve("nosuch")
