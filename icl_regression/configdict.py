"""A stand-in for `ml_collections.ConfigDict` where ml_collections is not installed (the GPU machine has none).

It does what the experiment config files do with one: nested attribute access and assignment, `update`, item
access, construction from a dict and `to_dict()`. `config.base_config()` uses ml_collections when present; the
command-line entry points need neither (they read config files and `--config.` overrides themselves, `cli.py`).
"""

from __future__ import annotations

from typing import Any, Mapping


class ConfigDict:
    """A dict whose keys are also attributes; nested dicts become ConfigDicts."""

    def __init__(self, initial: Mapping[str, Any] | None = None, **fields: Any):
        object.__setattr__(self, "_fields", {})
        self.update(initial or {}, **fields)

    def update(self, other: Mapping[str, Any] | None = None, **fields: Any) -> None:
        for key, value in {**dict(other or {}), **fields}.items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, Mapping) and not isinstance(value, ConfigDict):
            value = ConfigDict(value)
        self._fields[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._fields[key]

    def __contains__(self, key: str) -> bool:
        return key in self._fields

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __getattr__(self, key: str) -> Any:
        try:
            return self._fields[key]
        except KeyError:
            raise AttributeError(f"config has no field {key!r}; it has {sorted(self._fields)}") from None

    def keys(self):
        return self._fields.keys()

    def items(self):
        return self._fields.items()

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, ConfigDict) else v for k, v in self._fields.items()}

    def __repr__(self) -> str:
        return f"ConfigDict({self.to_dict()!r})"
