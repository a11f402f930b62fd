"""Finds and attribute reads on python-pkcs11's session, straight through the module's function
list (ctypes), for the worker's listings and per-key checks.

Why: python-pkcs11 turns every object a find returns into a Python object of a class made for
it (`make_object`: two C_GetAttributeValue calls for ten flags, then `type()`), and reads every
attribute set with two calls (the lengths, then the values). On SoftHSM each call re-reads the
object's file, so a listing of the token cost about 0.15 ms per object, most of it that; here a
find returns bare handles and a read is one C_GetAttributeValue into fixed buffers (again with
the lengths only if a value does not fit): about a third of the time (docs/performance.md).

The same loaded module and the same session: `ctypes.CDLL` of the path python-pkcs11 opened
returns the library already in the process, and C_GetFunctionList its function table. Only
reads and finds go this way; everything that changes the token stays with python-pkcs11.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from pkcs11 import exceptions

_UL = ctypes.c_ulong
_UNAVAILABLE = _UL(-1).value
_OK, _SENSITIVE, _TYPE_INVALID, _TOO_SMALL = 0x0, 0x11, 0x12, 0x150
_ERRORS = {0x82: exceptions.ObjectHandleInvalid, 0xB3: exceptions.SessionHandleInvalid,
           0x101: exceptions.UserNotLoggedIn, 0x30: exceptions.DeviceError,
           0x32: exceptions.DeviceRemoved, 0x05: exceptions.GeneralError}
#: where the calls sit in CK_FUNCTION_LIST (PKCS#11 2.40 pkcs11f.h order, after the version)
_GET_ATTRIBUTE_VALUE, _FIND_INIT, _FIND, _FIND_FINAL = 24, 26, 27, 28
#: a fixed buffer's size: IDs, labels, EC parameters and points fit (a longer value is read
#: again with its length asked first)
DEFAULT_SIZE = 128


class _Attribute(ctypes.Structure):
    _fields_ = [("type", _UL), ("pValue", ctypes.c_void_p), ("ulValueLen", _UL)]


class _FunctionList(ctypes.Structure):
    _fields_ = [("version", ctypes.c_ubyte * 2), ("calls", ctypes.c_void_p * 29)]


def _error(rv: int, what: str) -> exceptions.PKCS11Error:
    return _ERRORS.get(rv, exceptions.PKCS11Error)(f"{what}: CKR 0x{rv:x}")


class RawSession:
    """Finds and reads on one python-pkcs11 session (`session.handle`) of module `path`."""

    def __init__(self, path: str, session: Any) -> None:
        lib = ctypes.CDLL(path)
        table = ctypes.POINTER(_FunctionList)()
        get = lib.C_GetFunctionList
        get.restype, get.argtypes = _UL, [ctypes.POINTER(ctypes.POINTER(_FunctionList))]
        rv = get(ctypes.byref(table))
        if rv != _OK:
            raise _error(rv, "C_GetFunctionList")
        calls = table.contents.calls
        attrs = ctypes.POINTER(_Attribute)
        self._get = ctypes.CFUNCTYPE(_UL, _UL, _UL, attrs, _UL)(calls[_GET_ATTRIBUTE_VALUE])
        self._init = ctypes.CFUNCTYPE(_UL, _UL, attrs, _UL)(calls[_FIND_INIT])
        self._find = ctypes.CFUNCTYPE(_UL, _UL, ctypes.POINTER(_UL), _UL,
                                      ctypes.POINTER(_UL))(calls[_FIND])
        self._final = ctypes.CFUNCTYPE(_UL, _UL)(calls[_FIND_FINAL])
        self._session = _UL(session.handle)
        self._lib = lib  # keeps the library referenced while the calls are in use
        self._templates: dict[tuple[tuple[int, int], ...], tuple[Any, list[Any]]] = {}

    def find(self, template: Mapping[int, int] | None = None) -> list[int]:
        """The handles of every object matching `template` (attribute -> CK_ULONG value)."""
        items = list((template or {}).items())
        tpl = (_Attribute * max(1, len(items)))()
        values = [_UL(v) for _, v in items]
        for i, ((attr, _), v) in enumerate(zip(items, values, strict=True)):
            tpl[i] = _Attribute(attr, ctypes.cast(ctypes.byref(v), ctypes.c_void_p),
                                ctypes.sizeof(v))
        rv = self._init(self._session, tpl, len(items))
        if rv != _OK:
            raise _error(rv, "C_FindObjectsInit")
        out: list[int] = []
        try:
            batch, count = (_UL * 512)(), _UL()
            while True:
                rv = self._find(self._session, batch, 512, ctypes.byref(count))
                if rv != _OK:
                    raise _error(rv, "C_FindObjects")
                if not count.value:
                    return out
                out += batch[:count.value]
        finally:
            self._final(self._session)

    def read(self, handle: int, spec: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """The raw values of these attributes of one object in one C_GetAttributeValue call
        (`spec`: (attribute, buffer size)); None for one the object does not have or keeps
        secret. If any value is missing, the call is made again with the lengths asked first
        (a value longer than its buffer is missing too): ask only for what the object has."""
        key = tuple(spec)
        made = self._templates.get(key)
        if made is None:
            bufs = [ctypes.create_string_buffer(size) for _, size in spec]
            made = ((_Attribute * len(spec))(), bufs)
            self._templates[key] = made
        tpl, bufs = made
        for i, ((attr, size), buf) in enumerate(zip(spec, bufs, strict=True)):
            tpl[i].type, tpl[i].pValue, tpl[i].ulValueLen = attr, ctypes.addressof(buf), size
        rv = self._get(self._session, handle, tpl, len(spec))
        if rv not in (_OK, _SENSITIVE, _TYPE_INVALID, _TOO_SMALL):
            raise _error(rv, "C_GetAttributeValue")
        lengths = [tpl[i].ulValueLen for i in range(len(spec))]
        if rv != _OK and _UNAVAILABLE in lengths:
            # one code for the whole call: SoftHSM answers ATTRIBUTE_SENSITIVE for a call
            # where another value did not fit; the lengths alone tell which is which
            return self._read_sized(handle, spec)
        return [None if n == _UNAVAILABLE else buf.raw[:n]
                for n, buf in zip(lengths, bufs, strict=True)]

    def _read_sized(self, handle: int, spec: Sequence[tuple[int, int]]) -> list[bytes | None]:
        tpl = (_Attribute * len(spec))()
        for i, (attr, _) in enumerate(spec):
            tpl[i] = _Attribute(attr, None, 0)
        rv = self._get(self._session, handle, tpl, len(spec))
        if rv not in (_OK, _SENSITIVE, _TYPE_INVALID):
            raise _error(rv, "C_GetAttributeValue")
        bufs = [None if tpl[i].ulValueLen == _UNAVAILABLE
                else ctypes.create_string_buffer(max(1, tpl[i].ulValueLen))
                for i in range(len(spec))]
        for i, buf in enumerate(bufs):
            tpl[i].pValue = None if buf is None else ctypes.addressof(buf)
            tpl[i].ulValueLen = 0 if buf is None else len(buf)
        rv = self._get(self._session, handle, tpl, len(spec))
        if rv not in (_OK, _SENSITIVE, _TYPE_INVALID):
            raise _error(rv, "C_GetAttributeValue")
        return [None if buf is None or tpl[i].ulValueLen == _UNAVAILABLE
                else buf.raw[:tpl[i].ulValueLen] for i, buf in enumerate(bufs)]


_ULONG_FORMAT = "=" + {4: "I", 8: "Q"}[ctypes.sizeof(_UL)]


def ulong(raw: bytes | None) -> int | None:
    """A CK_ULONG attribute's raw value (native byte order) as an int."""
    return None if raw is None else int(struct.unpack(_ULONG_FORMAT, raw)[0])


def boolean(raw: bytes | None) -> bool:
    """A CK_BBOOL attribute's raw value; a missing one is false."""
    return bool(raw) and raw != b"\x00"
