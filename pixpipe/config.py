"""Settings: ``pixpipe.toml`` (working dir or ``--config``), then ``PIXPIPE_*`` variables.

Every key can be set from the environment as ``PIXPIPE_`` + its path in capitals joined by
``__`` (``PIXPIPE_STORES__ORIGINALS=s3://uploads``). ``[[variants]]`` replaces the default
recipe.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from .limits import Limits
from .recipe import DEFAULT_RECIPE, Recipe, RecipeError

CONFIG_FILE = "pixpipe.toml"


_LIMITS = Limits()


class LimitsModel(BaseModel):
    max_input_bytes: int = Field(_LIMITS.max_input_bytes, gt=0)
    max_input_pixels: int = Field(_LIMITS.max_input_pixels, gt=0)
    max_frames: int = Field(_LIMITS.max_frames, gt=0)
    max_seconds: float = Field(_LIMITS.max_seconds, gt=0)
    transform_concurrency: int = Field(_LIMITS.transform_concurrency, gt=0)
    max_memory_mb: int = Field(_LIMITS.max_memory_mb, ge=0)

    def frozen(self) -> Limits:
        return Limits(**self.model_dump())


class StoresModel(BaseModel):
    originals: str | None = None
    variants: str | None = None
    backup: str | None = None
    quarantine: str | None = None
    cache: str | None = None


class BusModel(BaseModel):
    """``[bus]``: which NATS, how to prove who we are to it, how much it replicates.

    Secrets are ``SecretStr``: they print as ``**********`` in logs and errors."""

    url: str = "embedded"
    # The event stream's size limit (bytes; -1: only JetStream's own storage limit). When it is
    # full, new events are refused (uploads answer 503) rather than old ones silently dropped.
    max_bytes: int = Field(-1, ge=-1)
    # Copies of the stream, every KV bucket and every consumer on a cluster (1 on one node).
    replicas: int = Field(1, ge=1, le=5)
    creds: Path | None = None  # a .creds file (user JWT + nkey seed)
    nkey_seed: SecretStr | None = None
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


class RetryModel(BaseModel):
    attempts: int = Field(3, ge=1)
    backoff_s: list[float] = Field(default_factory=lambda: [60.0, 120.0])
    # An image still ``pending`` this long after it was announced (its ``object.created`` lost
    # with the bus, a batch hold cut short) is announced again (``pipeline/reconcile.py``).
    reannounce_after_s: float = Field(300.0, gt=0)


def _split_csv(value: Any) -> Any:
    return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class ApiModel(BaseModel):
    keys: Annotated[list[str], NoDecode] = Field(default_factory=list)  # "k1,k2" from the env
    signing_secret: str | None = None
    # Secrets signed with before (rotation): transform URLs they signed still verify; new URLs
    # are signed with signing_secret.
    previous_signing_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # An originals key served (404, rendered with the same options) by on-the-fly transforms
    # whose source is missing.
    transform_fallback: str | None = None
    # The originals key of the image `wm:` (and imgproxy's `wm`) lays over a transform.
    watermark: str | None = None
    # Server-Sent Events streams open at once (each holds a bus watch); past it, 503.
    max_event_streams: int = Field(200, ge=1)

    _csv = field_validator("keys", "previous_signing_secrets", mode="before")(_split_csv)


class WebhookModel(BaseModel):
    """A receiver of events, signed as the Standard Webhooks specification says. ``secret``
    is required: ``whsec_<base64>`` (the spec's form), or any other string, whose bytes are
    then the key (as ``whsec_`` + base64 of them)."""

    url: str
    secret: str = Field(min_length=1)

    @field_validator("secret", mode="before")
    @classmethod
    def _required(cls, value: Any) -> Any:
        if not value:
            raise ValueError("a webhook needs a secret (its events are signed with it)")
        return value


class ImgproxyModel(BaseModel):
    """``[imgproxy]``: imgproxy's URLs under ``prefix``, signed as imgproxy signs them. Keys
    and salts are hex, as imgproxy's; ``IMGPROXY_KEY``/``IMGPROXY_SALT`` (and the ``…S``
    lists) are read too, so a migrated deployment keeps its environment."""

    key: str | None = None  # one pair (PRODUCT.md §10) …
    salt: str | None = None
    keys: Annotated[list[str], NoDecode] = Field(default_factory=list)  # … or several (rotation)
    salts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    signature_size: int = Field(32, ge=1, le=32)
    prefix: str = "/imgproxy"
    presets: dict[str, str] = Field(default_factory=dict)  # name → "rs:fill:300:300/q:70"

    @field_validator("keys", "salts", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    def pairs(self) -> list[tuple[bytes, bytes]]:
        """The (key, salt) pairs a signature may be made with: settings, then imgproxy's env."""
        from .compat.imgproxy import hex_pairs

        env = os.environ
        keys = [*([self.key] if self.key else []), *self.keys]
        salts = [*([self.salt] if self.salt else []), *self.salts]
        if not keys and not salts:
            keys = _split_csv(env.get("IMGPROXY_KEYS") or env.get("IMGPROXY_KEY", ""))
            salts = _split_csv(env.get("IMGPROXY_SALTS") or env.get("IMGPROXY_SALT", ""))
        return hex_pairs(keys, salts)

    @model_validator(mode="after")
    def _paired(self) -> ImgproxyModel:
        self.pairs()  # hex, and as many salts as keys: said when the settings load
        return self


class ThumborModel(BaseModel):
    """``[thumbor]``: thumbor's URLs under ``prefix``, signed with thumbor's security key."""

    security_key: SecretStr | None = None
    prefix: str = "/thumbor"
    allow_unsafe: bool = False  # `/unsafe/…` URLs: anyone may ask for any size


class Settings(BaseSettings):
    """All of pixpipe's configuration, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix="PIXPIPE_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path("./pixpipe-data")
    stores: StoresModel = Field(default_factory=StoresModel)
    bus: BusModel = Field(default_factory=BusModel)
    limits: LimitsModel = Field(default_factory=LimitsModel)
    retry: RetryModel = Field(default_factory=RetryModel)
    api: ApiModel = Field(default_factory=ApiModel)
    imgproxy: ImgproxyModel = Field(default_factory=ImgproxyModel)
    thumbor: ThumborModel = Field(default_factory=ThumborModel)
    variants: list[dict[str, Any]] = Field(default_factory=list)
    webhooks: list[WebhookModel] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file's content arrives as init arguments; the environment beats it.
        return (env_settings, init_settings)

    @property
    def recipe(self) -> Recipe:
        """The variants, with the images their watermarks name read from files (relative to
        the working directory) and versioned by their content."""
        return with_watermarks(Recipe.parse(self.variants)) if self.variants else DEFAULT_RECIPE

    def store_url(self, name: str) -> str:
        """The URL of one of the five stores, defaulting to a folder under ``data_dir``."""
        url = getattr(self.stores, name)
        return url or f"file://{(self.data_dir / name).resolve()}"


def with_watermarks(recipe: Recipe) -> Recipe:
    """``recipe`` with its watermark files loaded and each watermark's version their digest."""
    assets: dict[str, bytes] = {}
    variants = []
    for variant in recipe:
        if variant.watermark is None:
            variants.append(variant)
            continue
        name = variant.watermark.image
        if name not in assets:
            try:
                assets[name] = Path(name).expanduser().read_bytes()
            except OSError as exc:
                raise RecipeError(f'variant "{variant.name}": watermark image {name!r} cannot '
                                  f"be read ({exc.strerror})") from None  # fmt: skip
        version = hashlib.sha256(assets[name]).hexdigest()[:12]
        variants.append(replace(variant, watermark=replace(variant.watermark, version=version)))
    return Recipe(tuple(variants), assets) if assets else recipe


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from ``config`` (or ``./pixpipe.toml`` if present) and the environment.

    Raises ``RecipeError``/``ValueError`` with a pointed message on a bad file.
    """
    path = config or Path(CONFIG_FILE)
    if config is not None and not config.is_file():
        raise FileNotFoundError(f"config file {config} not found")
    data = tomllib.loads(path.read_text("utf-8")) if path.is_file() else {}
    settings = Settings(**data)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        settings = settings.model_copy(update=changes)  # the command line beats everything
    settings.recipe  # noqa: B018 - validate the variants now, not on first use
    return settings


def api_keys_from_env(settings: Settings) -> list[str]:
    """``PIXPIPE_API_KEYS`` (comma-separated, the contract's short form) joins ``api.keys``."""
    extra = _split_csv(os.environ.get("PIXPIPE_API_KEYS", "")) or []
    return [*settings.api.keys, *extra]


__all__ = ["Limits", "RecipeError", "Settings", "api_keys_from_env", "load_settings"]
