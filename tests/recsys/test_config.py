from pathlib import Path

import pytest

from recsys.config import Config, ConfigError, env_names, load_config

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_local_overlays_base():
    cfg = load_config(CONF / "local.yaml", env={})
    assert cfg.spark.master == "local[2]"
    assert cfg.lake.user_buckets == 64
    assert cfg.events.weights.purchase == 8.0
    assert isinstance(cfg, Config)


def test_every_shipped_file_loads():
    for name in ("base.yaml", "local.yaml", "cluster.example.yaml"):
        load_config(CONF / name, env={})
    cluster = load_config(CONF / "cluster.example.yaml", env={})
    assert cluster.lake.root.startswith("s3a://")
    assert cluster.table_path("interactions") == "s3a://my-bucket/recsys/lake/interactions"
    assert dict(cluster.spark.extra)["spark.executor.cores"] == "4"


def test_env_override_is_typed():
    cfg = load_config(CONF / "local.yaml", env={"RECSYS__ALS__RANK": "32", "RECSYS__EVENTS__WEIGHTS__VIEW": "0.5"})
    assert cfg.als.rank == 32
    assert cfg.events.weights.view == 0.5


def test_env_override_unknown_name_is_an_error():
    with pytest.raises(ConfigError, match="RECSYS__ALS__RANKK"):
        load_config(CONF / "local.yaml", env={"RECSYS__ALS__RANKK": "3"})


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml", env={})


def test_unknown_key_names_it(tmp_path):
    (tmp_path / "base.yaml").write_text((CONF / "base.yaml").read_text())
    (tmp_path / "x.yaml").write_text("als:\n  rnak: 3\n")
    with pytest.raises(ConfigError, match=r"als\.rnak"):
        load_config(tmp_path / "x.yaml", env={})


def test_wrong_type_names_the_key(tmp_path):
    (tmp_path / "base.yaml").write_text((CONF / "base.yaml").read_text())
    (tmp_path / "x.yaml").write_text("lake:\n  user_buckets: many\n")
    with pytest.raises(ConfigError, match=r"lake\.user_buckets"):
        load_config(tmp_path / "x.yaml", env={})


def test_frozen():
    cfg = load_config(CONF / "local.yaml", env={})
    with pytest.raises(AttributeError):
        cfg.als.rank = 3  # type: ignore[misc]


def test_env_names_cover_every_leaf():
    names = env_names()
    assert names["RECSYS__ALS__RANK"] == ("als", "rank")
    assert names["RECSYS__EVENTS__WEIGHTS__PURCHASE"] == ("events", "weights", "purchase")


def test_every_base_key_has_a_comment():
    for line in (CONF / "base.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and ":" in stripped and not stripped.endswith(":"):
            assert "#" in line, f"uncommented key in base.yaml: {line!r}"
