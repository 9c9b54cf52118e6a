"""SIGTERM during training: the chief checkpoints the last finished step, then the run stops.

Batch schedulers send SIGTERM some seconds before SIGKILL (Slurm: `KillWait`, 30 s
by default), and MPICH's mpiexec forwards it to every rank. Only the chief
acts on it: after the step in flight it saves a checkpoint and raises
`Interrupted`. Every other rank keeps going until the chief's non-zero exit
makes `python -m mpi4py` abort the job, so that no collective is left
half-entered before the checkpoint is written.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class StopRequest:
  """Whether SIGTERM arrived while `installed` was active (`requested`)."""

  def __init__(self):
    self.requested = False
    self.signal_name = ""

  def _handler(self, signum, frame) -> None:
    del frame
    self.requested = True
    self.signal_name = signal.Signals(signum).name

  @contextlib.contextmanager
  def installed(self, enabled: bool = True):
    """Handles SIGTERM for the block (the main thread only; elsewhere it does nothing)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
      yield self
      return
    self._previous = signal.signal(signal.SIGTERM, self._handler)
    try:
      yield self
    finally:
      self.release(redeliver=False)  # an Interrupted on its way out has acted on it

  def release(self, *, redeliver: bool = True) -> None:
    """Gives SIGTERM back its previous meaning (training is over, its checkpoint is on disk).

    A SIGTERM that arrived too late to act on is delivered again, now that nothing
    is lost by it (the evaluation after training is redone by the rerun).
    """
    previous, self._previous = getattr(self, "_previous", None), None
    if previous is None:
      return
    signal.signal(signal.SIGTERM, previous)
    if redeliver and self.requested:
      signal.raise_signal(signal.SIGTERM)
