"""The signer's outputs read a chunk at a time (`Outputs.read_chunk`, behind the shim's
`read_output` request): each request reads only its chunk, the chunks make the file, a read past
the end is empty, and a name that is not an output's is refused as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from signer_shim.interface import SignerError
from signer_shim.outputs import Outputs


def test_chunks_make_the_file(tmp_path: Path) -> None:
    data = os.urandom(3 * 1000 + 17)
    (tmp_path / "key-backup.tar.gz").write_bytes(data)
    out = Outputs(tmp_path)
    read: list[int] = []
    got, offset = b"", 0
    while True:
        size, chunk = out.read_chunk("key-backup.tar.gz", offset, 1000)
        assert size == len(data)
        read.append(len(chunk))
        if not chunk:
            break
        got += chunk
        offset += len(chunk)
    assert got == data
    assert read == [1000, 1000, 1000, 17, 0]
    assert out.read_chunk("key-backup.tar.gz", 10**9, 1000) == (len(data), b"")


@pytest.mark.parametrize("name", ["../etc/passwd", ".hidden", "", "x" * 300, "missing.tar.gz"])
def test_a_name_that_is_not_an_outputs_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(SignerError):
        Outputs(tmp_path).read_chunk(name, 0, 10)
