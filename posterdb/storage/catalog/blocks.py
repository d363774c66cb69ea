"""Every block of the catalogue file checked against its checksum (`posterdb check --deep`).

DuckDB stores a 64-bit checksum at the start of every block and verifies it when it reads the
block, but it reads a block only when a query needs it: damage in an index (ART) block passes
every scan and fails the next insert. So the deep check reads the whole file itself: three 4 KiB
headers, then `total_blocks` blocks of `block_size` bytes, each `checksum | payload`, where the
checksum is DuckDB's (5381 XOR-folded with each 8-byte word × 0xbf58476d1ce4e5b9). The headers
calibrate the algorithm: when they do not verify (another storage format), the blocks are
reported as not verifiable rather than as damaged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEADER = 4096
HEADERS = 3
_MULT = np.uint64(0xBF58476D1CE4E5B9)
_SEED = np.uint64(5381)


def checksum(payload: np.ndarray) -> int:
    """DuckDB's checksum of a payload given as little-endian uint64 words."""
    with np.errstate(over="ignore"):
        return int(np.bitwise_xor.reduce(payload * _MULT) ^ _SEED)


def _block_checksums(words: np.ndarray) -> np.ndarray:
    """Checksums of each row (a block's payload words) of a 2-D uint64 array."""
    with np.errstate(over="ignore"):
        return np.bitwise_xor.reduce(words * _MULT, axis=1) ^ _SEED


@dataclass
class BlockReport:
    verifiable: bool
    blocks: int = 0
    bad: list[int] = field(default_factory=list)      # block ids whose checksum fails
    missing: int = 0                                   # blocks in use past the end of the file
    reason: str = ""

    def problems(self, path: Path) -> list[str]:
        out = []
        if self.bad:
            shown = ", ".join(map(str, self.bad[:10])) + (" ..." if len(self.bad) > 10 else "")
            out.append(f"catalogue {path.name}: {len(self.bad)} of {self.blocks} blocks fail "
                       f"their checksum (blocks {shown}): the file is damaged; restore it "
                       "from a backup")
        if self.missing:
            out.append(f"catalogue {path.name}: at least {self.missing} blocks in use lie past "
                       "the end of the file (truncated): restore it from a backup")
        return out


def verify_blocks(path: Path, block_size: int, total_blocks: int, free_blocks: int = 0,
                  chunk_blocks: int = 64) -> BlockReport:
    """Check the headers and every block of the DuckDB file at `path` (DuckDB counts
    `total_blocks`, `free_blocks` of them free: free blocks at the end are cut off the file, so
    only more missing blocks than free ones mean a truncated file)."""
    path = Path(path)
    in_file = max(0, (path.stat().st_size - HEADER * HEADERS) // block_size)
    missing = max(0, total_blocks - in_file - free_blocks)
    total_blocks = min(total_blocks, in_file)
    with open(path, "rb") as f:
        head = f.read(HEADER * HEADERS)
        if len(head) < HEADER * HEADERS:
            return BlockReport(True, missing=total_blocks, reason="file shorter than its headers")
        words = np.frombuffer(head, "<u8").reshape(HEADERS, HEADER // 8)
        if not np.array_equal(_block_checksums(words[:, 1:]), words[:, 0]):
            return BlockReport(False, reason="the file's headers do not verify with the "
                                             "checksum this posterdb knows (another format)")
        if block_size % 8 or block_size <= 8:
            return BlockReport(False, reason=f"unexpected block size {block_size}")
        report = BlockReport(True, blocks=int(total_blocks), missing=int(missing))
        per = block_size // 8
        done = 0
        while done < total_blocks:
            n = min(chunk_blocks, total_blocks - done)
            data = f.read(n * block_size)
            whole = len(data) // block_size
            if whole:
                blk = np.frombuffer(data[:whole * block_size], "<u8").reshape(whole, per)
                bad = np.nonzero(_block_checksums(blk[:, 1:]) != blk[:, 0])[0]
                report.bad += [done + int(b) for b in bad]
            if whole < n:
                break
            done += n
    return report
