"""An analytic model of data-parallel training time at scale, after Kurth et al. (2017), numpy only.

Seconds per iteration (every worker node processes its `per_node_batch` once):

  compute     per_node_batch x flops_per_example / achieved FLOP/s of a node
  straggler   a synchronous group waits for its slowest node: with per-node compute
              times ~ N(compute, (cv x compute)^2), E[max of p] - mean = cv x compute x
              E[max of p standard normals] (Blom's approximation, `expected_max_normal`)
  all-reduce  the group's gradients, alpha-beta (Hockney) cost of the ring or the
              tree algorithm (`allreduce_time`)
  hybrid      + the group leader's push of gradients and pull of parameters (2 x bytes)
              through its link and the S servers' links (shards of bytes / S, an update
              rate per server), servers shared by the G groups (M/D/1 queueing, `wait_s`),
              and the leader's broadcast of the parameters to its group
              (climjax/parallel/parameter_server.py's protocol)
  gradient lag  communication overlapped with the next step's compute: only what
              exceeds the compute is exposed (Kurth et al. 2018)

`iteration_time` returns that breakdown; `throughput`, `sustained_flops`, `speedup`
and `best_layout` (the G and S that minimise time to accuracy = examples to target
(statistical efficiency against G) / throughput) build on it. `CORI_KNL`,
`CLIMATE_SC17` and `PAPER_LAYOUT` hold the paper's setting, every number with its
source; `reproduce_paper` sets the model beside the paper's headline. `calibrate`
reads this machine's `launch/bench.py` and `launch/bench_comm.py` JSON.
`launch/scaling_model.py` prints all of it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence

import numpy as np

STRATEGIES = ("sync", "hybrid")
ALGORITHMS = ("ring", "tree")
STAT_EFF_COLUMNS = ("groups", "seed", "steps_to_target", "simulated")
SCALING_COLUMNS = tuple(
  "ranks strategy groups servers mode model global_batch examples_per_second efficiency "
  "compute_s comm_s wait_s staleness_mean steps_to_target".split()
)


class ModelInputError(ValueError):
  """A file or value the model cannot use; the message names it and what was expected."""


@dataclasses.dataclass(frozen=True)
class Machine:
  """Per-node speed and network of a cluster; `sources[field]` says where each number is from."""

  name: str
  achieved_flops: float  # FLOP/s one node sustains on the workload's training step
  latency_s: float  # alpha: seconds per message
  bandwidth: float  # 1 / beta: bytes/s through one node's network link
  server_bandwidth: float  # bytes/s through a parameter server's link
  server_update_rate: float  # parameter bytes/s a server applies an update to
  straggler_cv: float  # coefficient of variation of a node's compute time per step
  sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)


@dataclasses.dataclass(frozen=True)
class Workload:
  """A network's training step: FLOPs per example, bytes of gradients, examples per node."""

  name: str
  flops_per_example: float  # forward + backward
  parameter_bytes: float  # bytes all-reduced / pushed per step (float32 gradients)
  per_node_batch: float
  sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)


# ---------------------------------------------------------------------------
# Communication and stragglers.


def allreduce_time(
  nbytes: float, p: float, latency_s: float, bandwidth: float, algorithm: str = "ring"
) -> float:
  """Seconds to all-reduce `nbytes` over `p` nodes in the alpha-beta (Hockney) model.

  ring: reduce-scatter + all-gather, 2(p-1)/p x bytes/bandwidth + 2(p-1) x latency
  (bandwidth-optimal, latency linear in p). tree: binomial reduce + broadcast (or
  recursive doubling), 2 ceil(log2 p) x (latency + bytes/bandwidth) (latency-optimal,
  every level moves the whole buffer).
  """
  if p <= 1:
    return 0.0
  if algorithm == "ring":
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency_s
  if algorithm == "tree":
    return 2 * math.ceil(math.log2(p)) * (latency_s + nbytes / bandwidth)
  raise ModelInputError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def broadcast_time(
  nbytes: float, p: float, latency_s: float, bandwidth: float, algorithm: str = "ring"
) -> float:
  """Seconds to broadcast `nbytes` from one node to `p` (alpha-beta model).

  ring: scatter + ring all-gather (van de Geijn), 2(p-1)/p x bytes/bandwidth +
  (log2 p + p - 1) x latency. tree: binomial, ceil(log2 p) x (latency + bytes/bandwidth).
  """
  if p <= 1:
    return 0.0
  if algorithm == "ring":
    return 2 * (p - 1) / p * nbytes / bandwidth + (math.log2(p) + p - 1) * latency_s
  if algorithm == "tree":
    return math.ceil(math.log2(p)) * (latency_s + nbytes / bandwidth)
  raise ModelInputError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def expected_max_normal(p: float) -> float:
  """E[max of p independent standard normals], Blom's Phi^-1((p - 0.375) / (p + 0.25)).

  0 for p = 1; 0.59 for p = 2 (exact 0.56), 3.29 for p = 1,200, where the common
  sqrt(2 ln p) = 3.77 overstates it by 15%.
  """
  if p <= 1:
    return 0.0
  return statistics.NormalDist().inv_cdf((p - 0.375) / (p + 0.25))


# ---------------------------------------------------------------------------
# Time per iteration.


def _check_layout(nodes, strategy, groups, servers, algorithm) -> None:
  if strategy not in STRATEGIES:
    raise ModelInputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
  if algorithm not in ALGORITHMS:
    raise ModelInputError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
  if nodes < 1 or not 1 <= groups <= nodes:
    raise ModelInputError(f"need 1 <= groups <= nodes, got groups={groups}, nodes={nodes}")
  if strategy == "sync" and (groups != 1 or servers != 0):
    raise ModelInputError("strategy 'sync' has groups=1 and servers=0; use 'hybrid' for more")
  if strategy == "hybrid" and servers < 1:
    raise ModelInputError("strategy 'hybrid' needs servers >= 1")


def iteration_time(
  workload: Workload,
  machine: Machine,
  nodes: int,
  *,
  strategy: str = "sync",
  groups: int = 1,
  servers: int = 0,
  algorithm: str = "ring",
  gradient_lag: bool = False,
  per_node_batch: float | None = None,
) -> dict:
  """Seconds per iteration on `nodes` worker nodes (servers are extra nodes), broken down.

  Returns compute_s, straggler_s, allreduce_s, exchange_s (leader <-> servers),
  broadcast_s, comm_s (their sum), exposed_comm_s (comm_s, or what gradient lag
  leaves of it), wait_s (queueing at the servers), total_s, and the layout.
  """
  _check_layout(nodes, strategy, groups, servers, algorithm)
  batch = workload.per_node_batch if per_node_batch is None else per_node_batch
  nbytes = workload.parameter_bytes
  p = math.ceil(nodes / groups)  # the largest group sets the pace
  compute = batch * workload.flops_per_example / machine.achieved_flops
  straggler = machine.straggler_cv * compute * expected_max_normal(p)
  net = (machine.latency_s, machine.bandwidth, algorithm)
  allreduce = allreduce_time(nbytes, p, *net)
  exchange = broadcast = service = 0.0
  if strategy == "hybrid":
    shard = nbytes / servers
    # Each exchange: the leader's link carries 2 x bytes (push, pull) while the
    # servers' links carry 2 x shard each and apply the update, all at once.
    service = 2 * shard / machine.server_bandwidth + shard / machine.server_update_rate
    leader = 2 * nbytes / machine.bandwidth + 2 * machine.latency_s
    exchange = max(leader, service)
    broadcast = broadcast_time(nbytes, p, *net)
  comm = allreduce + exchange + broadcast
  exposed = max(0.0, comm - compute) if gradient_lag else comm
  base = compute + straggler + exposed
  total, wait = base, 0.0
  if strategy == "hybrid" and groups > 1:
    # A server is busy `service` s per exchange and G groups arrive at random
    # (they are asynchronous): an M/D/1 queue of the other G - 1 groups,
    # W = rho s / (2 (1 - rho)) with rho = (G - 1) s / T, solved with T = base + W
    # (the larger root of the quadratic); and T >= G s, the servers' own limit.
    gs = (groups - 1) * service
    total = 0.5 * ((base + gs) + math.sqrt((base - gs) ** 2 + 2 * gs * service))
    total = max(total, groups * service)
    wait = total - base
  return {
    "nodes": nodes,
    "strategy": strategy,
    "groups": groups,
    "servers": servers,
    "algorithm": algorithm,
    "gradient_lag": gradient_lag,
    "group_size": p,
    "per_node_batch": batch,
    "compute_s": compute,
    "straggler_s": straggler,
    "allreduce_s": allreduce,
    "exchange_s": exchange,
    "broadcast_s": broadcast,
    "comm_s": comm,
    "exposed_comm_s": exposed,
    "wait_s": wait,
    "server_utilisation": groups * service / total if strategy == "hybrid" else 0.0,
    "total_s": total,
  }


def throughput(workload: Workload, machine: Machine, nodes: int, **layout) -> float:
  """Examples per second over all worker nodes."""
  t = iteration_time(workload, machine, nodes, **layout)
  return nodes * t["per_node_batch"] / t["total_s"]


def sustained_flops(workload: Workload, machine: Machine, nodes: int, **layout) -> float:
  """FLOP/s the whole job sustains: the model's FLOPs per example times its throughput."""
  return throughput(workload, machine, nodes, **layout) * workload.flops_per_example


def speedup(workload: Workload, machine: Machine, nodes: int, **layout) -> float:
  """Throughput over one node's (no communication, no stragglers): R / flops_per_example."""
  single = machine.achieved_flops / workload.flops_per_example
  return throughput(workload, machine, nodes, **layout) / single


# ---------------------------------------------------------------------------
# The climate network's cost, counted from its architecture.

# climjax.models.detector.PAPER_FEATURES (parallel/ may not import models/).
DETECTOR_FEATURES = (128, 256, 512, 768, 1024, 1280)


def encoder_decoder_cost(
  height: int,
  width: int,
  channels: int,
  features: Sequence[int] = DETECTOR_FEATURES,
  *,
  kernel: int = 5,
  head_outputs: int = 10,
  head_kernel: int = 3,
) -> dict:
  """FLOPs, parameters and activations of climjax's detector (Racah et al.) on one example.

  Encoder: a k x k stride-2 convolution per entry of `features`; heads: k_h x k_h
  convolutions on the grid with `head_outputs` channels in all (objectness 2,
  classes 4, boxes 4); decoder: the encoder mirrored in transposed convolutions back
  to `channels`. 2 FLOPs per multiply-add; a transposed convolution costs what the
  convolution it mirrors costs. Training = 3 x forward (forward, input gradient,
  weight gradient) less the first layer's input gradient, which nothing needs.
  Activations: float32 outputs of every layer and the input.
  """
  h, w, cin = height, width, channels
  forward, params, values = [], 0, h * w * channels
  for f in features:
    h, w = h // 2, w // 2
    forward.append(2.0 * h * w * kernel * kernel * cin * f)
    params += kernel * kernel * cin * f + f
    values += h * w * f
    cin = f
  forward.append(2.0 * h * w * head_kernel**2 * cin * head_outputs)
  params += head_kernel**2 * cin * head_outputs + head_outputs
  values += h * w * head_outputs
  for f in [*reversed(features[:-1]), channels]:
    forward.append(2.0 * h * w * kernel * kernel * cin * f)
    params += kernel * kernel * cin * f + f
    h, w = h * 2, w * 2
    values += h * w * f
    cin = f
  return {
    "flops_forward": sum(forward),
    "flops_train": 3 * sum(forward) - forward[0],
    "parameters": params,
    "parameter_bytes": 4 * params,
    "activation_bytes": 4 * values,
  }


def training_working_set(cost: dict, batch: int) -> float:
  """Bytes of one training step: activations and their gradients (Caffe's data and diff
  blobs) per example, plus parameters, gradients and two optimizer moments."""
  return 2 * cost["activation_bytes"] * batch + 4 * cost["parameter_bytes"]


# ---------------------------------------------------------------------------
# The paper's setting: Kurth et al. (2017), "Deep Learning at 15PF", SC17.

PAPER = "Kurth et al. 2017 (SC17)"
NERSC_CORI = (
  "NERSC, Cori configuration page (Aries: '0.25 us to 3.7 us MPI latency, ~8GB/sec MPI bandwidth')"
)
CLIMATE_COST = encoder_decoder_cost(768, 768, 16)
MCDRAM_BYTES = 16e9

CORI_KNL = Machine(
  name="Cori Phase II: Xeon Phi 7250 (KNL) nodes, Cray Aries Dragonfly",
  achieved_flops=2.0e12,
  latency_s=3.7e-6,
  bandwidth=8e9,
  server_bandwidth=8e9,
  server_update_rate=18e9,
  straggler_cv=0.075,
  sources={
    "achieved_flops": f"{PAPER}, abstract: '~2TFLOP/s on a single Cori Phase-II Xeon-Phi node' "
    "(IntelCaffe); 33% of the 7250's fp32 peak, 68 cores x 1.4 GHz x 2 VPUs x 16 lanes x 2 "
    "= 6.09 TFLOP/s",
    "latency_s": f"{NERSC_CORI}: the upper end, as a 9,600-node job crosses the global links",
    "bandwidth": NERSC_CORI,
    "server_bandwidth": "assumed: a parameter server is a KNL node with the same Aries link",
    "server_update_rate": "assumed: an SGD update streams ~5 arrays of its shard (read "
    "gradient, parameter, momentum; write two) through DDR4 at ~90 GB/s (6 channels of "
    "DDR4-2400 = 115 GB/s peak)",
    "straggler_cv": "assumed (the one free parameter): not stated in the paper; KNL nodes vary "
    "in speed (MCDRAM cache-mode conflicts, clock scaling: NERSC's Cori variability study, "
    "Chunduri et al. SC17 on KNL + Aries), taken as 7.5%, the middle of 5-10%; the "
    "launcher prints the headline's sensitivity to it",
  },
)

CLIMATE_SC17 = Workload(
  name="climate encoder-decoder, 768x768x16",
  flops_per_example=CLIMATE_COST["flops_train"],
  parameter_bytes=300e6,
  per_node_batch=16,
  sources={
    "flops_per_example": "counted from the architecture (encoder_decoder_cost): climjax's "
    "detector, Racah et al.'s encoder 128..1280 (6 conv 5x5/2), 3 head convs, mirrored "
    "decoder, at 768x768x16. The SC17 network has the same 9 convolutions but 5 "
    "deconvolutions and ~300 MB (docs/DESIGN.md section 2); its layer table was not available, "
    "so this is an estimate of its FLOPs",
    "parameter_bytes": "docs/DESIGN.md section 2: the talk's climate network, '~300 MB of "
    f"parameters' (the architecture above has {CLIMATE_COST['parameter_bytes'] / 1e6:.0f} MB)",
    "per_node_batch": "assumed: not stated in the sources checked; 16 is the largest power "
    "of two whose training working set (training_working_set: "
    f"{training_working_set(CLIMATE_COST, 16) / 1e9:.1f} GB at 16, "
    f"{training_working_set(CLIMATE_COST, 32) / 1e9:.1f} GB at 32) fits a KNL node's "
    f"{MCDRAM_BYTES / 1e9:.0f} GB MCDRAM",
  },
)

PAPER_LAYOUT = {
  "nodes": 9600,
  "strategy": "hybrid",
  "groups": 8,
  "servers": 14,
  "algorithm": "ring",
}
PAPER_LAYOUT_SOURCES = {
  "nodes": f"{PAPER}, abstract: '~9600 Xeon-Phi nodes' (worker nodes; servers are extra)",
  "strategy": f"{PAPER}: synchronous groups, asynchronous across groups through parameter servers",
  "groups": "assumed: the paper's climate run used a handful of groups (8 as recalled, not "
  "confirmed in the sources checked); the headline moves by a few % from 4 to 16",
  "servers": "assumed: one server per layer with parameters (docs/DESIGN.md section 3: 'one or more "
  "per layer'), 9 conv + 5 deconv = 14; shards taken as equal",
  "algorithm": "assumed: ring all-reduce inside a group (bandwidth-optimal for 300 MB)",
}

# The headline to reproduce: quantity -> (value, source).
PAPER_RESULTS = {
  "iteration_s": (12.6, "docs/DESIGN.md section 3: '12.6 s/iteration' at 9,600 nodes"),
  "sustained_flops": (
    13.27e15,
    f"{PAPER}, abstract: sustained '11.41-13.27 PFLOP/s' (climate: 13.27)",
  ),
  "peak_flops": (15.07e15, f"{PAPER}, abstract: peak '11.73-15.07 PFLOP/s' (climate: 15.07)"),
  "speedup": (7200.0, "docs/DESIGN.md section 3: '7,200x over one node'"),
}
# The tolerance tests/test_scaling_model.py holds the reproduction to.
PAPER_TOLERANCE = 0.15


def reproduce_paper(
  machine: Machine = CORI_KNL, workload: Workload = CLIMATE_SC17, layout: Mapping | None = None
) -> dict:
  """The model's headline for the paper's layout beside the paper's, with relative errors.

  The peak (the paper's fastest iteration) is not modelled: the model predicts the
  mean iteration, which is what sustained PF/s and the speed-up measure.
  """
  layout = dict(PAPER_LAYOUT if layout is None else layout)
  nodes = layout.pop("nodes")
  t = iteration_time(workload, machine, nodes, **layout)
  model = {
    "iteration_s": t["total_s"],
    "sustained_flops": sustained_flops(workload, machine, nodes, **layout),
    "peak_flops": None,
    "speedup": speedup(workload, machine, nodes, **layout),
  }
  rows = []
  for key, (paper, source) in PAPER_RESULTS.items():
    value = model[key]
    error = None if value is None else (value - paper) / paper
    rows.append(
      {"quantity": key, "paper": paper, "model": value, "rel_error": error, "source": source}
    )
  return {"breakdown": t, "rows": rows}


# ---------------------------------------------------------------------------
# Statistical efficiency and the best layout.


def linear_stat_eff(a: float) -> Callable[[int], float]:
  """Examples to target at G groups relative to G = 1: 1 + a (G - 1)."""
  return lambda g: 1.0 + a * (g - 1)


# The default when no measured curve is given: assumed, illustrative only.
DEFAULT_STAT_EFF_A = 0.1


def _float(value: str, path: str, column: str) -> float:
  try:
    return float(value)
  except ValueError:
    raise ModelInputError(f"{path}: column {column!r} has {value!r}, expected a number") from None


def _read_csv(path: str, columns: Sequence[str]) -> list[dict]:
  try:
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      missing = [c for c in columns if c not in (reader.fieldnames or ())]
      if missing:
        raise ModelInputError(
          f"{path}: missing column(s) {', '.join(missing)}; expected columns {', '.join(columns)}"
        )
      rows = list(reader)
  except OSError as e:
    raise ModelInputError(f"{path}: cannot read ({e.strerror or e})") from None
  if not rows:
    raise ModelInputError(f"{path}: no rows; expected columns {', '.join(columns)}")
  return rows


def read_stat_eff(path: str) -> dict:
  """statistical_efficiency.csv -> {G: examples to target relative to G = 1} and which G were simulated.

  Mean steps_to_target over seeds, divided by G = 1's. That is the ratio of examples
  when every G's runs use the same batch per update, as the simulation does.
  """
  rows = _read_csv(path, STAT_EFF_COLUMNS)
  steps: dict[int, list[float]] = {}
  simulated: dict[int, bool] = {}
  for row in rows:
    g = int(_float(row["groups"], path, "groups"))
    if not row["steps_to_target"].strip():
      continue  # a seed that never reached the target
    steps.setdefault(g, []).append(_float(row["steps_to_target"], path, "steps_to_target"))
    simulated[g] = simulated.get(g, False) or row["simulated"].strip().lower() in (
      "1",
      "true",
      "yes",
    )
  if 1 not in steps:
    raise ModelInputError(f"{path}: no row with groups=1 that reached the target (the reference)")
  ref = float(np.mean(steps[1]))
  table = {g: float(np.mean(v)) / ref for g, v in sorted(steps.items())}
  return {
    "multiplier": table,
    "simulated": simulated,
    "seeds": {g: len(v) for g, v in steps.items()},
  }


def best_layout(
  workload: Workload,
  machine: Machine,
  nodes: int,
  stat_eff: Callable[[int], float] | Mapping[int, float],
  *,
  servers: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
  algorithms: Sequence[str] = ALGORITHMS,
  gradient_lag: bool = False,
) -> dict:
  """The layout with the least time to accuracy on `nodes` nodes, servers included.

  Time to accuracy = examples to target / throughput, with examples to target =
  stat_eff(G) x (those at G = 1): statistical efficiency (a callable, or a measured
  table, whose G alone are tried) times the throughput model. G = 1 is synchronous
  (no servers); G > 1 tries every S of `servers` and both algorithms. Returns the
  best and every candidate, ordered, with time_to_accuracy relative to the best.
  """
  if isinstance(stat_eff, Mapping):
    table = dict(stat_eff)
    candidates_g = sorted(g for g in table if g <= nodes)
    multiplier = table.__getitem__
  else:
    candidates_g = [2**k for k in range(int(math.log2(nodes)) + 1)]
    multiplier = stat_eff
  rows = []
  for g in candidates_g:
    layouts = [("sync", 0)] if g == 1 else [("hybrid", s) for s in servers if nodes - s >= g]
    for strategy, s in layouts:
      for algorithm in algorithms:
        workers = nodes - s
        layout = dict(strategy=strategy, groups=g, servers=s, algorithm=algorithm)
        t = iteration_time(workload, machine, workers, gradient_lag=gradient_lag, **layout)
        rate = workers * t["per_node_batch"] / t["total_s"]
        rows.append(
          {
            **layout,
            "workers": workers,
            "iteration_s": t["total_s"],
            "stat_eff": multiplier(g),
            "examples_per_second": rate,
            "time_to_accuracy": multiplier(g) / rate,
          }
        )
  if not rows:
    raise ModelInputError(f"no layout fits {nodes} nodes")
  rows.sort(key=lambda r: r["time_to_accuracy"])
  best = rows[0]["time_to_accuracy"]
  for r in rows:
    r["time_to_accuracy"] /= best
  return {"best": rows[0], "candidates": rows}


# ---------------------------------------------------------------------------
# Calibration from this machine's benchmarks.


def fit_alpha_beta(
  sizes: Sequence[float], times: Sequence[float], ranks: int
) -> tuple[float, float]:
  """(latency_s, bandwidth) of the ring all-reduce model fitted to measured times.

  t = 2(p-1) alpha + 2(p-1)/p x bytes / bandwidth, least squares on relative errors
  (so the 1 KB and the 300 MB points weigh alike); alpha is held at 0 if it fits negative.
  """
  if ranks < 2:
    raise ModelInputError(f"an all-reduce fit needs >= 2 ranks, got {ranks}")
  n, t = np.asarray(sizes, float), np.asarray(times, float)
  a = np.stack([np.full_like(n, 2 * (ranks - 1)), 2 * (ranks - 1) / ranks * n], axis=1)
  coef = np.linalg.lstsq(a / t[:, None], np.ones_like(t), rcond=None)[0]
  if coef[0] < 0:
    coef = np.array(
      [0.0, np.linalg.lstsq(a[:, 1:] / t[:, None], np.ones_like(t), rcond=None)[0][0]]
    )
  if coef[1] <= 0:
    raise ModelInputError("all-reduce times do not grow with the buffer size: no bandwidth to fit")
  return float(coef[0]), float(1.0 / coef[1])


def _load_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except OSError as e:
    raise ModelInputError(f"{path}: cannot read ({e.strerror or e})") from None
  except json.JSONDecodeError as e:
    raise ModelInputError(f"{path}: not JSON ({e.msg} at line {e.lineno})") from None


TIMES = ("mpi4jax_s", "mpi4py_s")
BENCH_ROWS = ("tc", "ar", "wf", "detector384", "detector768")
BENCH_KEYS = (
  "flops_per_step",
  "climjax_seconds_per_step",
  "climjax_examples_per_second",
  "climjax_gflops",
)


def calibrate(bench_json: str | None = None, bench_comm_json: str | None = None) -> dict:
  """This machine's achieved FLOP/s per benchmark (launch/bench.py --out) and MPI latency
  and bandwidth (launch/bench_comm.py --out, mpi4jax all-reduce fitted by `fit_alpha_beta`).

  Returns {"achieved_flops": {bench: FLOP/s of the whole machine}, "flops_per_example",
  "batch", "latency_s", "bandwidth" (mpi4jax; mpi4py_latency_s, mpi4py_bandwidth), "ranks", "cores", "gradient_bytes" (tc_cnn,
  detector), "measured" (bench_comm's step times), "sources"}; what a missing file
  would give is absent.
  """
  out: dict = {"achieved_flops": {}, "flops_per_example": {}, "batch": {}, "sources": {}}
  if bench_json:
    bench = _load_json(bench_json)
    rows = {k: bench[k] for k in BENCH_ROWS if isinstance(bench.get(k), dict)}
    if not rows:
      raise ModelInputError(
        f"{bench_json}: no benchmark rows; expected launch/bench.py --out JSON with one of "
        f"{', '.join(BENCH_ROWS)}"
      )
    for name, row in rows.items():
      missing = [k for k in BENCH_KEYS if k not in row]
      if missing:
        raise ModelInputError(f"{bench_json}: row {name!r} lacks {', '.join(missing)}")
      batch = round(row["climjax_examples_per_second"] * row["climjax_seconds_per_step"])
      out["achieved_flops"][name] = row["climjax_gflops"] * 1e9
      out["batch"][name] = batch
      out["flops_per_example"][name] = row["flops_per_step"] / max(batch, 1)
    out["cpu"] = bench.get("machine", {}).get("cpu", "unknown")
    out["sources"]["achieved_flops"] = f"{bench_json}: climjax_gflops per benchmark"
  if bench_comm_json:
    comm = _load_json(bench_comm_json)
    rows = comm.get("allreduce")
    if not rows or "ranks" not in comm:
      raise ModelInputError(
        f"{bench_comm_json}: expected launch/bench_comm.py --out JSON with 'ranks' and 'allreduce'"
      )
    try:
      sizes = [r["bytes"] for r in rows]
      fits = {k: fit_alpha_beta(sizes, [r[k] for r in rows], int(comm["ranks"])) for k in TIMES}
    except KeyError as e:
      raise ModelInputError(f"{bench_comm_json}: an allreduce row lacks {e}") from None
    # The jitted step's all-reduce is mpi4jax's; mpi4py's (the servers' path) is kept beside.
    out["latency_s"], out["bandwidth"] = fits["mpi4jax_s"]
    out["mpi4py_latency_s"], out["mpi4py_bandwidth"] = fits["mpi4py_s"]
    out["ranks"], out["cores"] = int(comm["ranks"]), comm.get("cores")
    out["gradient_bytes"] = {
      k: comm[k]["gradient_bytes"] for k in ("tc_cnn", "detector") if comm.get(k)
    }
    out["measured"] = {k: comm[k] for k in ("tc_cnn", "detector") if comm.get(k)}
    out["sources"]["network"] = (
      f"{bench_comm_json}: ring model fitted to {len(rows)} mpi4jax all-reduce sizes "
      f"on {comm['ranks']} ranks"
    )
  return out


def local_machine(calibration: dict, achieved_flops: float) -> Machine:
  """This machine as one MPI rank at `achieved_flops` (ranks sharing its cores each get
  their share of a benchmark's FLOP/s), with the fitted latency and bandwidth."""
  if "latency_s" not in calibration:
    raise ModelInputError("local predictions need --bench_comm (MPI latency and bandwidth)")
  return Machine(
    name="this machine",
    achieved_flops=achieved_flops,
    latency_s=calibration["latency_s"],
    bandwidth=calibration["bandwidth"],
    server_bandwidth=calibration["bandwidth"],
    server_update_rate=5e9,
    straggler_cv=0.0,
    sources={
      **calibration["sources"],
      "server_update_rate": "assumed: ~20 GB/s of memory bandwidth / 4 arrays",
      "straggler_cv": "0: ranks on one machine share its cores; bench_comm times the slowest",
    },
  )


def read_scaling_csv(path: str) -> list[dict]:
  """scaling.csv (launch/scaling.py) rows with the issue's columns as numbers where numeric."""
  rows = _read_csv(path, SCALING_COLUMNS)
  numeric = ("ranks", "groups", "servers", "global_batch", "examples_per_second")
  out = []
  for row in rows:
    parsed = dict(row)
    for c in numeric:
      parsed[c] = _float(row[c], path, c)
    for c in ("compute_s", "comm_s", "wait_s"):
      parsed[c] = _float(row[c], path, c) if row[c].strip() else None
    if row["strategy"] not in STRATEGIES:
      raise ModelInputError(f"{path}: strategy {row['strategy']!r}, expected one of {STRATEGIES}")
    out.append(parsed)
  return out
