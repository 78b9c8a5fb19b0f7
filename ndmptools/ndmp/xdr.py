"""XDR (RFC 4506) encoding and decoding, as declarative types: pure bytes, no sockets.

NDMP bodies are XDR structures. Each type here knows how to pack a Python
value and how to unpack one from a buffer; a Struct's value is a ``Record``
(attribute access, keyword construction, missing fields take their type's
default), a Union's value is a Record holding the discriminant and the arm.

Decoding never trusts a length on the wire: a string, opaque or array longer
than what is left in the buffer is an ``XdrError`` before anything is
allocated, so a hostile length costs nothing.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")


class XdrError(ValueError):
    """The bytes are not a valid encoding of the type (truncated, too long, bad value)."""


class Decoder:
    """Reads XDR items from one buffer, front to back."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data)
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, size: int) -> memoryview:
        if size < 0 or size > self.remaining:
            raise XdrError(f"needs {size} bytes at offset {self.pos}, {self.remaining} left")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def i32(self) -> int:
        return _I32.unpack(self.take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self.take(8))[0]

    def padded(self, size: int) -> bytes:
        """``size`` bytes and the zero padding to the next multiple of four after them."""
        data = bytes(self.take(size))
        self.take((4 - size % 4) % 4)
        return data


class Encoder:
    """Collects XDR items; ``bytes()`` joins them."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u32(self, value: int) -> None:
        try:
            self.parts.append(_U32.pack(value))
        except struct.error as err:
            raise XdrError(f"{value!r} is no unsigned 32-bit value") from err

    def i32(self, value: int) -> None:
        try:
            self.parts.append(_I32.pack(value))
        except struct.error as err:
            raise XdrError(f"{value!r} is no signed 32-bit value") from err

    def u64(self, value: int) -> None:
        try:
            self.parts.append(_U64.pack(value))
        except struct.error as err:
            raise XdrError(f"{value!r} is no unsigned 64-bit value") from err

    def padded(self, data: bytes) -> None:
        self.parts.append(bytes(data))
        pad = (4 - len(data) % 4) % 4
        if pad:
            self.parts.append(b"\0" * pad)

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


class XdrType(ABC):
    """One XDR type: ``pack(encoder, value)``, ``unpack(decoder) -> value``, ``default()``."""

    min_size = 4  # the fewest bytes an encoded value takes: bounds array counts on decode

    @abstractmethod
    def pack(self, enc: Encoder, value: Any) -> None: ...

    @abstractmethod
    def unpack(self, dec: Decoder) -> Any: ...

    @abstractmethod
    def default(self) -> Any: ...

    def encode(self, value: Any) -> bytes:
        enc = Encoder()
        self.pack(enc, value)
        return bytes(enc)

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        """The value in ``data``; bytes after it are ignored (a peer may pad)."""
        return self.unpack(Decoder(data))


class _UInt(XdrType):
    def pack(self, enc: Encoder, value: int) -> None:
        enc.u32(int(value))

    def unpack(self, dec: Decoder) -> int:
        return dec.u32()

    def default(self) -> int:
        return 0


class _Int(XdrType):
    def pack(self, enc: Encoder, value: int) -> None:
        enc.i32(int(value))

    def unpack(self, dec: Decoder) -> int:
        return dec.i32()

    def default(self) -> int:
        return 0


class _UHyper(XdrType):
    min_size = 8

    def pack(self, enc: Encoder, value: int) -> None:
        enc.u64(int(value))

    def unpack(self, dec: Decoder) -> int:
        return dec.u64()

    def default(self) -> int:
        return 0


class _UShort(_UInt):
    """XDR has no 16-bit items: a u_short travels as a 32-bit word and must fit 16 bits."""

    def pack(self, enc: Encoder, value: int) -> None:
        if not 0 <= int(value) <= 0xFFFF:
            raise XdrError(f"{value!r} is no unsigned 16-bit value")
        enc.u32(int(value))

    def unpack(self, dec: Decoder) -> int:
        value = dec.u32()
        if value > 0xFFFF:
            raise XdrError(f"{value} is no unsigned 16-bit value")
        return value


class _Short(_Int):
    def pack(self, enc: Encoder, value: int) -> None:
        if not -0x8000 <= int(value) <= 0x7FFF:
            raise XdrError(f"{value!r} is no signed 16-bit value")
        enc.i32(int(value))

    def unpack(self, dec: Decoder) -> int:
        value = dec.i32()
        if not -0x8000 <= value <= 0x7FFF:
            raise XdrError(f"{value} is no signed 16-bit value")
        return value


class _UChar(_UInt):
    def pack(self, enc: Encoder, value: int) -> None:
        if not 0 <= int(value) <= 0xFF:
            raise XdrError(f"{value!r} is no unsigned 8-bit value")
        enc.u32(int(value))

    def unpack(self, dec: Decoder) -> int:
        value = dec.u32()
        if value > 0xFF:
            raise XdrError(f"{value} is no unsigned 8-bit value")
        return value


UInt = _UInt()
Int = _Int()
UHyper = _UHyper()
UShort = _UShort()
Short = _Short()
UChar = _UChar()


class Enum(_UInt):
    """An XDR enum: any 32-bit value decodes, so a handler can answer an unknown one with an
    NDMP error (ILLEGAL_ARGS) instead of the whole message failing to decode."""

    def __init__(self, name: str, values: dict[str, int]) -> None:
        self.name = name
        self.values = dict(values)
        self.names = {number: key for key, number in values.items()}
        for key, number in values.items():
            setattr(self, key, number)

    def name_of(self, value: int) -> str:
        return self.names.get(value, f"{self.name}({value})")

    def default(self) -> int:
        return min(self.values.values()) if self.values else 0


class _Bool(_UInt):
    def pack(self, enc: Encoder, value: bool) -> None:
        enc.u32(1 if value else 0)

    def unpack(self, dec: Decoder) -> bool:
        value = dec.u32()
        if value > 1:
            raise XdrError(f"{value} is no boolean")
        return bool(value)

    def default(self) -> bool:
        return False


Bool = _Bool()


class Opaque(XdrType):
    """Variable-length opaque data ``opaque name<max>``."""

    def __init__(self, max_size: int | None = None) -> None:
        self.max_size = max_size

    def pack(self, enc: Encoder, value: bytes) -> None:
        data = bytes(value)
        if self.max_size is not None and len(data) > self.max_size:
            raise XdrError(f"{len(data)} bytes where at most {self.max_size} fit")
        enc.u32(len(data))
        enc.padded(data)

    def unpack(self, dec: Decoder) -> bytes:
        size = dec.u32()
        if self.max_size is not None and size > self.max_size:
            raise XdrError(f"{size} bytes where at most {self.max_size} fit")
        return dec.padded(size)

    def default(self) -> bytes:
        return b""


class FixedOpaque(XdrType):
    """Fixed-length opaque data ``opaque name[size]``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.min_size = (size + 3) // 4 * 4

    def pack(self, enc: Encoder, value: bytes) -> None:
        data = bytes(value)
        if len(data) != self.size:
            raise XdrError(f"{len(data)} bytes where exactly {self.size} go")
        enc.padded(data)

    def unpack(self, dec: Decoder) -> bytes:
        return dec.padded(self.size)

    def default(self) -> bytes:
        return b"\0" * self.size


class String(Opaque):
    """An XDR string: bytes on the wire, ``str`` in Python.

    Paths need not be UTF-8: undecodable bytes map to surrogates and back
    (surrogateescape), so a name round-trips byte for byte.
    """

    def pack(self, enc: Encoder, value: str | bytes) -> None:
        data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
        super().pack(enc, data)

    def unpack(self, dec: Decoder) -> str:
        return super().unpack(dec).decode("utf-8", "surrogateescape")

    def default(self) -> str:
        return ""


class Array(XdrType):
    """Variable-length array ``type name<max>`` as a Python list."""

    def __init__(self, element: XdrType, max_count: int | None = None) -> None:
        self.element = element
        self.max_count = max_count

    def pack(self, enc: Encoder, value: Iterable[Any]) -> None:
        items = list(value)
        if self.max_count is not None and len(items) > self.max_count:
            raise XdrError(f"{len(items)} items where at most {self.max_count} fit")
        enc.u32(len(items))
        for item in items:
            self.element.pack(enc, item)

    def unpack(self, dec: Decoder) -> list[Any]:
        count = dec.u32()
        if self.max_count is not None and count > self.max_count:
            raise XdrError(f"{count} items where at most {self.max_count} fit")
        # Every item takes at least min_size bytes: a count the buffer cannot hold is a lie.
        if count * max(1, self.element.min_size) > dec.remaining:
            raise XdrError(f"an array of {count} items in {dec.remaining} bytes")
        return [self.element.unpack(dec) for _ in range(count)]

    def default(self) -> list[Any]:
        return []


class Record:
    """The value of a Struct or Union: attributes by field name."""

    __slots__ = ("__dict__", "_type")

    def __init__(self, _type: XdrType | None = None, **fields: Any) -> None:
        object.__setattr__(self, "_type", _type)
        self.__dict__.update(fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self.__dict__ == other.__dict__

    def __repr__(self) -> str:
        name = getattr(self._type, "name", "Record")
        inner = ", ".join(f"{key}={value!r}" for key, value in self.__dict__.items())
        return f"{name}({inner})"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Struct(XdrType):
    """An XDR struct; calling it makes a Record with the defaults for fields not given."""

    def __init__(self, name: str, fields: list[tuple[str, XdrType]]) -> None:
        self.name = name
        self.fields = list(fields)
        self.field_names = {field for field, _ in self.fields}
        self.min_size = sum(kind.min_size for _, kind in self.fields)

    def __call__(self, **values: Any) -> Record:
        unknown = set(values) - self.field_names
        if unknown:
            raise TypeError(f"{self.name} has no field {sorted(unknown)[0]!r}")
        record = Record(self)
        for field, kind in self.fields:
            setattr(record, field, values[field] if field in values else kind.default())
        return record

    def pack(self, enc: Encoder, value: Record | dict) -> None:
        get = value.get if isinstance(value, dict) else lambda key, default: getattr(value, key, default)
        for field, kind in self.fields:
            item = get(field, None)
            try:
                kind.pack(enc, kind.default() if item is None else item)
            except XdrError as err:
                raise XdrError(f"{self.name}.{field}: {err}") from None

    def unpack(self, dec: Decoder) -> Record:
        record = Record(self)
        for field, kind in self.fields:
            setattr(record, field, kind.unpack(dec))
        return record

    def default(self) -> Record:
        return self()


VOID: XdrType | None = None  # a union arm with no data


class Union(XdrType):
    """A discriminated union: ``arms`` maps a discriminant value to (arm name, type or VOID).

    The Record has the discriminant under ``switch_name`` and, for a non-void
    arm, the arm's value under its name. A discriminant with no arm and no
    ``default_arm`` does not decode.
    """

    def __init__(
        self,
        name: str,
        switch_name: str,
        switch_type: XdrType,
        arms: dict[int, tuple[str, XdrType | None]],
        default_arm: tuple[str, XdrType | None] | None = None,
    ) -> None:
        self.name = name
        self.switch_name = switch_name
        self.switch_type = switch_type
        self.arms = dict(arms)
        self.default_arm = default_arm

    def _arm(self, switch: int) -> tuple[str, XdrType | None]:
        arm = self.arms.get(switch, self.default_arm)
        if arm is None:
            raise XdrError(f"{self.name}: no arm for {self.switch_name} {switch}")
        return arm

    def __call__(self, switch: int, value: Any = None) -> Record:
        record = Record(self, **{self.switch_name: switch})
        arm_name, kind = self._arm(switch)
        if kind is not None:
            setattr(record, arm_name, kind.default() if value is None else value)
        return record

    def pack(self, enc: Encoder, value: Record) -> None:
        switch = getattr(value, self.switch_name)
        self.switch_type.pack(enc, switch)
        arm_name, kind = self._arm(switch)
        if kind is not None:
            item = getattr(value, arm_name, None)
            kind.pack(enc, kind.default() if item is None else item)

    def unpack(self, dec: Decoder) -> Record:
        switch = self.switch_type.unpack(dec)
        arm_name, kind = self._arm(switch)
        record = Record(self, **{self.switch_name: switch})
        if kind is not None:
            setattr(record, arm_name, kind.unpack(dec))
        return record

    def default(self) -> Record:
        first = min(self.arms)
        return self(first)
