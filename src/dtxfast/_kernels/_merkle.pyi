"""Type stub of the compiled Merkle kernel (ext/_merkle.pyx); see dtxfast.crypto._merkle_py."""

from typing import Any

def hash_leaves(data: Any, chunk_size: int, out: Any, nthreads: int = ...) -> None: ...
def hash_level(prev: Any, out: Any, nthreads: int = ...) -> None: ...
def verify_multiproofs(
    chunks: list[bytes], leaf_idx: Any, leaf_start: Any, leaf_count: Any, hashes: Any,
    hash_start: Any, roots: Any, out: Any, scratch_pos: Any, scratch_hash: Any, nthreads: int = ...,
) -> None: ...
