"""Configuration: ``conf/base.yaml`` plus an environment overlay, loaded once into frozen dataclasses.

Every key in the YAML files must name a field of the dataclasses below (an unknown key is an error), every
file named must exist, and every field can be overridden from the environment with a name derived from its
path: ``RECSYS__ALS__RANK=64`` sets ``als.rank``. Values are passed down as arguments; there is no global
config object.

Example:
    >>> cfg = load_config("conf/local.yaml")
    >>> cfg.als.rank
    64
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "RECSYS"
BASE_FILE = "base.yaml"


class ConfigError(ValueError):
    """A configuration file or override is missing, malformed or names an unknown key."""


@dataclass(frozen=True)
class LakeConfig:
    root: str = "data/lake"
    raw_root: str = "data/raw"
    models_root: str = "data/models"
    checkpoint_dir: str = "data/checkpoints"
    user_buckets: int = 64
    quarantine_max_share: float = 0.05
    max_event_age_days: int = 3650
    target_file_mb: int = 128


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[2]"
    app_name: str = "recsys"
    driver_memory: str = "4g"
    shuffle_partitions: int = 8
    log_level: str = "WARN"
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"
    cluster: bool = False
    ttl_seconds: int = 3600
    pipeline_size: int = 1000
    socket_timeout_s: float = 2.0
    long_ttl_seconds: int = 86400
    history_seed_length: int = 50
    load_direct_read: bool = True


@dataclass(frozen=True)
class EventWeights:
    view: float = 1.0
    click: float = 2.0
    add_to_cart: float = 4.0
    purchase: float = 8.0


@dataclass(frozen=True)
class EventsConfig:
    weights: EventWeights = field(default_factory=EventWeights)
    half_life_days: float = 30.0
    quantity_cap: int = 10


@dataclass(frozen=True)
class AlsConfig:
    rank: int = 64
    reg_param: float = 0.1
    alpha: float = 1.0
    max_iter: int = 15
    nonnegative: bool = False
    binary_confidence: bool = True
    top_n: int = 100
    active_window_days: int = 30
    checkpoint_interval: int = 5
    seed: int = 42
    knn_neighbors: int = 100
    knn_max_items_per_user: int = 500
    candidates_broadcast_max_mb: int = 256
    refit_every_days: float = 7.0


@dataclass(frozen=True)
class ContentWeights:
    category: float = 1.0
    brand: float = 0.6
    price: float = 0.4
    title: float = 0.8


@dataclass(frozen=True)
class ContentConfig:
    top_k: int = 50
    weights: ContentWeights = field(default_factory=ContentWeights)
    title_features: int = 4096
    lsh_tables: int = 6
    lsh_bits: int = 16
    block_max: int = 1000
    recall_sample: int = 200
    recent_items: int = 5
    top_n: int = 100
    seed: int = 17
    broadcast_max_products: int = 1_000_000


@dataclass(frozen=True)
class BlendConfig:
    weight_cf: float = 1.0
    weight_content: float = 0.1
    weight_popular: float = 0.5
    weight_itemknn: float = 0.5
    cold_start_min_interactions: int = 3
    drop_viewed: bool = False
    max_per_category: int = 10
    page_size: int = 20
    top_n: int = 100
    popular_half_life_days: float = 7.0
    popular_top_n: int = 200
    normalization: str = "minmax"
    popular_candidates: int = 50
    itemknn_top_n: int = 100
    similar_top_n: int = 50
    broadcast_max_products: int = 1_000_000


@dataclass(frozen=True)
class ServingConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    threads: int = 1
    timeout_s: int = 30
    api_key: str = ""
    max_page_size: int = 100
    max_body_bytes: int = 1_048_576
    history_length: int = 200
    stream_key: str = "interactions:stream"
    stream_maxlen: int = 10_000_000
    max_batch: int = 1000
    history_ttl_s: int = 2_592_000
    event_ttl_s: int = 86_400
    retry_after_s: int = 5
    model_check_s: float = 5.0
    stream_group: str = "stream-ingest"
    stream_batch: int = 5000
    product_cache_s: float = 30.0
    product_cache_size: int = 200_000
    page_cache_size: int = 20_000
    page_cache_s: float = 60.0
    blas_threads: int = 1


@dataclass(frozen=True)
class MetricsConfig:
    pushgateway_url: str = ""
    push_timeout_s: float = 5.0


@dataclass(frozen=True)
class Config:
    lake: LakeConfig = field(default_factory=LakeConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    als: AlsConfig = field(default_factory=AlsConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def table_path(self, name: str) -> str:
        """Location of the Delta table ``name`` under ``lake.root``."""
        return _join(self.lake.root, name)

    def model_path(self, *parts: str) -> str:
        """Location under ``lake.models_root`` (serving bundles, exported artifacts)."""
        return _join(self.lake.models_root, *parts)


def _join(root: str, *parts: str) -> str:
    # Object-store URIs (s3a://, abfss://, gs://) must keep their scheme; plain paths are made absolute so
    # Spark executors and the driver agree on them.
    if "://" in root:
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root).absolute().joinpath(*parts))


def load_config(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Loads ``base.yaml`` from the folder of ``path``, overlays ``path`` and then environment overrides.

    Args:
        path: The environment file (e.g. ``conf/local.yaml``). ``None`` loads ``conf/base.yaml`` alone.
        env: Environment used for ``RECSYS__SECTION__KEY`` overrides; defaults to ``os.environ``.

    Returns:
        The validated, frozen configuration.

    Raises:
        ConfigError: A file is missing or not a mapping, a key is unknown, or a value has the wrong type.
    """
    env = os.environ if env is None else env
    overlay = Path(path) if path is not None else Path(__file__).resolve().parent.parent / "conf" / BASE_FILE
    if not overlay.is_file():
        raise ConfigError(f"config file not found: {overlay}")
    base = overlay.parent / BASE_FILE
    if not base.is_file():
        raise ConfigError(f"config file not found: {base} (every environment file overlays base.yaml)")
    merged: dict[str, Any] = {}
    for file in [base] if overlay.resolve() == base.resolve() else [base, overlay]:
        _deep_merge(merged, _read_yaml(file), str(file))
    _apply_env(merged, env)
    return _build(Config, merged, "")


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of sections")
    return data


def _deep_merge(into: dict[str, Any], new: Mapping[str, Any], source: str) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value, source)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def env_names(cls: type = Config, prefix: str = ENV_PREFIX) -> dict[str, tuple[str, ...]]:
    """Every environment variable that can override a field, mapped to the field's path."""
    names: dict[str, tuple[str, ...]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}__{f.name.upper()}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            names.update({k: (f.name, *v) for k, v in env_names(tp, name).items()})  # type: ignore[arg-type]
        else:
            names[name] = (f.name,)
    return names


def _apply_env(merged: dict[str, Any], env: Mapping[str, str]) -> None:
    known = env_names()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX + "__"):
            continue
        if name not in known:
            raise ConfigError(f"environment variable {name} names no config field")
        node = merged
        *parents, leaf = known[name]
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value) if value.strip() else value


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key {_dotted(where, unknown[0])!r} (known: {', '.join(fields)})")
    kwargs = {name: _coerce(hints[name], value, _dotted(where, name)) for name, value in data.items()}
    return cls(**kwargs)


def _dotted(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)  # type: ignore[arg-type]
    origin = typing.get_origin(tp)
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping")
        return types.MappingProxyType({str(k): str(v) for k, v in value.items()})
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, bool | dict | list) or value is None:
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{where}: unsupported field type {tp!r}")  # pragma: no cover - a programming error
