#!/usr/bin/env python3
"""Writes tests/data/header-v1.bin: a version-1 volume header slot built from
the byte map in src/volume/header.rs by an independent implementation.

Run once when a format version is born; the file is then frozen: every later
release must decode it (tests in src/volume/header.rs)."""
import hashlib, struct, sys

MAGIC = b"\x89CVOL\r\n\x1a"
SLOT = 32 * 1024

def var(b):
    return struct.pack("<I", len(b)) + b

def slot():
    vid = b"vol-0123456789abcdef0"
    fixed = struct.pack("<QQQIB3sQ", 7, 1 << 30, 1 << 20, 4096, 1, b"\0\0\0", 1_700_000_000) + vid
    variable = (var(b"demo")
                + var(b"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
                + var(b"us-east-1") + var(bytes([1, 2, 3, 4, 5])) + var(b"")
                + struct.pack("<I", 1) + var(b"aws:ebs:id") + var(vid))
    body = fixed + variable
    head = MAGIC + struct.pack("<HHI", 1, 1, len(body))
    data = head + body
    data += hashlib.sha256(data).digest()
    return data + b"\0" * (SLOT - len(data))

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/header-v1.bin"
    with open(out, "wb") as f:
        f.write(slot())
