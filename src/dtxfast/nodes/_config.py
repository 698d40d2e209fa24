"""The one way a node reads its settings: defaults < TOML file < ``DTX_*`` environment < flags.

Every node's config is a dataclass deriving from :class:`NodeConfig`; its :meth:`NodeConfig.load`
reads the TOML file's ``[SECTION]`` table (or its top level), then ``DTX_<FIELD>`` environment
variables, then the flags that are not None, converts each value to the field's type and calls
:meth:`NodeConfig.validate`. A bad value is one :class:`~dtxfast.errors.ParameterError` line.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass
... class DemoConfig(NodeConfig):
...     SECTION = "demo"
...     listen: str = "127.0.0.1:0"
...     heartbeat: float = 60.0
>>> DemoConfig.load(None, env={"DTX_HEARTBEAT": "5"}, listen="127.0.0.1:7001")
DemoConfig(listen='127.0.0.1:7001', heartbeat=5.0)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from ..errors import ParameterError

__all__ = ["NodeConfig", "parse_listen"]

C = TypeVar("C", bound="NodeConfig")


def parse_listen(listen: str, what: str = "--listen") -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``; ParameterError naming ``what`` otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ParameterError(f"{what} must be HOST:PORT with a port in 0..65535, got {listen!r}")
    return host.strip("[]"), int(port)


def _convert(name: str, kind: Any, v: Any) -> Any:
    try:
        if kind in ("float", float):
            out = float(v)
            if not math.isfinite(out):
                raise ValueError
            return out
        if kind in ("int", int):
            if isinstance(v, float) and not v.is_integer():
                raise ValueError
            return int(v)
        if kind in ("bool", bool):
            if isinstance(v, bool):
                return v
            s = str(v).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return str(v)
    except (TypeError, ValueError):
        what = getattr(kind, "__name__", kind)
        finite = " (finite)" if kind in ("float", float) else ""
        raise ParameterError(f"setting {name} = {v!r} is not a {what}{finite}") from None


class NodeConfig:
    """Base of the node configs (dataclasses); ``SECTION`` names their TOML table."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def load(cls: type[C], path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None,
             **flags: Any) -> C:
        """Defaults, then the TOML file (its ``[SECTION]`` table or top level), then ``DTX_<FIELD>``
        environment variables, then ``flags`` that are not None: the later wins."""
        values: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        if path:
            try:
                import tomllib
            except ImportError:  # pragma: no cover - Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            try:
                with open(path, "rb") as fh:
                    doc = tomllib.load(fh)
            except OSError as exc:
                raise ParameterError(f"{path}: cannot read the config file ({exc.strerror})") from None
            except tomllib.TOMLDecodeError as exc:
                raise ParameterError(f"{path}: not valid TOML ({exc})") from None
            except UnicodeDecodeError as exc:
                raise ParameterError(f"{path}: not valid TOML (not UTF-8 text at byte {exc.start})") from None
            table = doc.get(cls.SECTION, doc) if cls.SECTION else doc
            for k, v in table.items():
                name = k.replace("-", "_")
                if name not in fields:
                    raise ParameterError(f"{path}: unknown setting {k!r}")
                values[name] = v
        env = os.environ if env is None else env
        for name in fields:
            v = env.get("DTX_" + name.upper())
            if v is not None and v != "":
                values[name] = v
        values.update({k: v for k, v in flags.items() if v is not None})
        unknown = set(values) - set(fields)
        if unknown:
            raise ParameterError(f"unknown {cls.SECTION or 'node'} settings: {', '.join(sorted(unknown))}")
        out = {name: _convert(name, fields[name].type, v) for name, v in values.items()}
        cfg = cls(**out)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Check the values together; ParameterError otherwise (subclasses extend this)."""
