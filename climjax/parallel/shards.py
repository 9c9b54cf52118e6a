"""How the parameter pytree is cut into server shards and packed into MPI messages.

Used by both sides of the hybrid protocol (parameter_server.py and
compute_group.py). Each server owns whole leaves, balanced by size; a message
is one byte buffer: HEADER_LEN int64 followed by the raw bytes of the shard's
leaves in order, so one send carries a whole shard of any dtypes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

TAG_PUSH = 11  # leader -> server: gradients of the server's shard
TAG_PULL = 12  # leader -> server: asks for the current shard (start-up)
TAG_DONE = 13  # leader -> server: this group has finished
TAG_PARAMS = 14  # server -> leader: the shard after the update (reply to PUSH/PULL)
TAG_FINAL = 15  # server -> rank 0: the final shard, for evaluation

# Every message starts with HEADER_LEN int64. Leader -> server: the version the
# gradient was computed from, 0, the group's step, examples in the step.
# Server -> leader: the server's version, stop flag, the group's step, staleness
# of the update just applied (-1: none).
HEADER_LEN = 4
HEADER_BYTES = HEADER_LEN * 8


def assign_leaves(sizes: Sequence[int], num_servers: int) -> list[int]:
  """The server that owns each leaf: largest leaves first, each to the least-loaded server."""
  load = [0] * num_servers
  owner = [0] * len(sizes)
  for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
    server = min(range(num_servers), key=lambda s: (load[s], s))
    owner[i] = server
    load[server] += sizes[i]
  return owner


@dataclasses.dataclass(frozen=True)
class ShardPlan:
  """How the parameter pytree is cut into server shards and packed into messages.

  A message is a byte buffer: HEADER_LEN int64 followed by the raw bytes of the
  shard's leaves in order, so one send carries a whole shard of any dtypes.
  """

  treedef: jax.tree_util.PyTreeDef
  shapes: tuple[tuple[int, ...], ...]
  dtypes: tuple[np.dtype, ...]
  owner: tuple[int, ...]
  num_servers: int

  @classmethod
  def from_tree(cls, tree, num_servers: int) -> ShardPlan:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    shapes = tuple(tuple(np.shape(x)) for x in leaves)
    dtypes = tuple(np.dtype(np.asarray(x).dtype) for x in leaves)
    sizes = [
      int(np.prod(s, dtype=np.int64)) * d.itemsize for s, d in zip(shapes, dtypes, strict=True)
    ]
    return cls(treedef, shapes, dtypes, tuple(assign_leaves(sizes, num_servers)), num_servers)

  def leaves_of(self, server: int) -> tuple[int, ...]:
    return tuple(i for i, s in enumerate(self.owner) if s == server)

  def _nbytes(self, indices: Sequence[int]) -> int:
    return sum(
      int(np.prod(self.shapes[i], dtype=np.int64)) * self.dtypes[i].itemsize for i in indices
    )

  def buffer(self, indices: Sequence[int]) -> np.ndarray:
    return np.empty(HEADER_BYTES + self._nbytes(indices), np.uint8)

  def pack(
    self, leaves: Sequence[np.ndarray], indices: Sequence[int], header: Sequence[int]
  ) -> np.ndarray:
    """One message: header, then leaves[k] for k in indices (a full leaf list)."""
    buf = self.buffer(indices)
    self.pack_into(buf, leaves, indices, header)
    return buf

  def pack_into(
    self, buf: np.ndarray, leaves, indices: Sequence[int], header: Sequence[int]
  ) -> None:
    buf[:HEADER_BYTES].view(np.int64)[:] = header
    offset = HEADER_BYTES
    for i in indices:
      raw = np.ascontiguousarray(leaves[i], dtype=self.dtypes[i]).reshape(-1).view(np.uint8)
      buf[offset : offset + raw.size] = raw
      offset += raw.size

  def unpack(self, buf: np.ndarray, indices: Sequence[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(header, leaves in `indices` order), copied out of the buffer."""
    header = buf[:HEADER_BYTES].view(np.int64).copy()
    out, offset = [], HEADER_BYTES
    for i in indices:
      n = int(np.prod(self.shapes[i], dtype=np.int64)) * self.dtypes[i].itemsize
      out.append(buf[offset : offset + n].view(self.dtypes[i]).reshape(self.shapes[i]).copy())
      offset += n
    return header, out

  def all_leaves(self) -> tuple[int, ...]:
    return tuple(range(len(self.shapes)))

  def unflatten(self, leaves: Sequence[np.ndarray]):
    return jax.tree_util.tree_unflatten(self.treedef, list(leaves))
