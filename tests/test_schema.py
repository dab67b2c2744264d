"""The JSON Schema and the datasets Features describe the same record, field by field."""

import datasets
import pytest

from coord_bench.schema import features, load_schema, record_errors, schema_to_feature

JSON_TO_DTYPE = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool"}


def walk_schema(node, path=""):
    kind = node.get("type")
    kinds = [k for k in (kind if isinstance(kind, list) else [kind]) if k != "null"]
    if "enum" in node:
        yield path, "string"
    elif kinds == ["object"]:
        for name, child in node["properties"].items():
            yield from walk_schema(child, f"{path}.{name}" if path else name)
    elif kinds == ["array"]:
        yield from walk_schema(node["items"], path + "[]")
    else:
        yield path, JSON_TO_DTYPE[kinds[0]]


def walk_features(feature, path=""):
    if isinstance(feature, dict):
        for name, child in feature.items():
            yield from walk_features(child, f"{path}.{name}" if path else name)
    elif isinstance(feature, datasets.List):
        yield from walk_features(feature.feature, path + "[]")
    else:
        assert isinstance(feature, datasets.Value), f"{path}: unexpected feature {feature!r}"
        yield path, feature.dtype


def test_features_and_schema_agree_field_by_field():
    from_schema = list(walk_schema(load_schema()))
    from_features = list(walk_features(dict(features())))
    assert from_schema == from_features
    # spot checks that the walk reaches deep, typed leaves
    leaves = dict(from_features)
    assert leaves["turns[].messages[].n_chars"] == "int64"
    assert leaves["annotations.latents.smoothed[][]"] == "float64"
    assert leaves["outcome.decision_success"] == "bool"
    assert len(leaves) > 80


def test_nullable_union_with_two_types_is_refused():
    with pytest.raises(ValueError, match="exactly one non-null type"):
        schema_to_feature({"type": ["string", "integer"]})


def test_record_errors_name_the_field_path():
    errors = list(record_errors({"id": "x"}))
    assert any("'source' is a required property" in e for e in errors)
    assert all(e.split(":")[0] for e in errors)
