"""Memory of one training step of the paper-scale detector: parameters, optimizer state,
activations and peak RSS.

  python launch/memory.py                                  # configs/semisup.py:paper, 768x768x16, batch 1
  python launch/memory.py --height=768 --width=1152 --batch=2 --out=memory.json
  python launch/memory.py --config=configs/semisup.py --height=192 --width=288

Builds the config's network, optimizer and training step exactly as
`launch/main.py` trains them (climjax.training.steps.detector_train_step), on
random fields with a few random boxes, and reports:

  parameters        count and float32 bytes
  optimizer_state   bytes of the optax state (Adam: two moments per parameter)
  xla_temp          XLA's buffer assignment for the compiled step: the
                    activations kept for the backward pass plus workspace, at
                    their peak (compiled.memory_analysis().temp_size_in_bytes)
  peak_rss          the process's peak resident memory after compiling and
                    running one step (getrusage), which adds JAX's runtime,
                    the compiled code and the host copies of the inputs

The platform defaults of a training run apply (XLA flags, tcmalloc).
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch.bench import apply_platform  # noqa: E402  (imports no JAX)


def _gb(n: float) -> str:
  return f"{n / 1e9:.2f} GB"


def _tree_bytes(tree) -> int:
  import jax

  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, "dtype")))


def measure(config, batch: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from climjax import losses
  from climjax.models import detector
  from climjax.training import optim
  from climjax.training.state import create_train_state, num_parameters
  from climjax.training.steps import detector_train_step as train_step

  model = detector.make_detector(config.model)
  tx = optim.make_optimizer(config.optimizer, config.train.steps)
  channels = len(config.data.channels)
  shape = (config.data.height, config.data.width, channels)
  if config.model.time_steps > 1:
    shape = (config.model.time_steps, *shape)
  t0 = time.time()
  state = jax.jit(functools.partial(create_train_state, model, tx), static_argnums=1)(
    jax.random.key(0, impl="rbg"), (1, *shape)
  )
  rng = np.random.default_rng(0)
  max_boxes = config.data.max_boxes
  corners = rng.uniform(0, 1, (batch, max_boxes, 2, 2)) * np.array(shape[-3:-1])
  boxes = np.concatenate([corners.min(axis=2), corners.max(axis=2)], axis=-1)  # ymin xmin ymax xmax
  example = {
    "fields": jnp.asarray(rng.standard_normal((batch, *shape), np.float32)),
    "boxes": jnp.asarray(boxes, jnp.float32),
    "box_classes": jnp.asarray(
      rng.integers(0, config.model.num_classes, (batch, max_boxes)), jnp.int32
    ),
    "box_mask": jnp.asarray(np.arange(max_boxes) < 4, jnp.float32)[None].repeat(batch, 0),
    "labelled": jnp.ones((batch,), jnp.float32),
  }
  loss_fn = functools.partial(
    losses.detection_loss,
    cell_size=model.cell_size,
    anchor_size=config.model.anchor_size,
    **config.loss.to_dict(),
  )
  step = jax.jit(
    functools.partial(train_step, apply_fn=model.apply, tx=tx, loss_fn=loss_fn), donate_argnums=0
  )
  n_params = num_parameters(state.params)
  param_bytes = _tree_bytes(state.params)
  opt_bytes = _tree_bytes(state.opt_state)
  compiled = step.lower(state, example).compile()
  analysis = compiled.memory_analysis()
  t_compile = time.time() - t0
  t1 = time.time()
  state, metrics = compiled(state, example)
  loss = float(metrics["loss"])
  t_step = time.time() - t1
  if not np.isfinite(loss):
    raise FloatingPointError(f"the step's loss is {loss}")
  return {
    "input": list(shape),
    "batch": batch,
    "parameters": n_params,
    "parameter_bytes": param_bytes,
    "optimizer_state_bytes": opt_bytes,
    "xla_temp_bytes": int(analysis.temp_size_in_bytes),
    "xla_argument_bytes": int(analysis.argument_size_in_bytes),
    "xla_output_bytes": int(analysis.output_size_in_bytes),
    # Linux reports ru_maxrss in KiB.
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "compile_seconds": t_compile,
    "step_seconds": t_step,
    "loss": loss,
  }


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--config", default="configs/semisup.py:paper", help="config file[:arg]")
  parser.add_argument("--height", type=int, default=768)
  parser.add_argument("--width", type=int, default=768)
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--out", default="", help="also write the report as JSON here")
  parser.add_argument("--xla_flags", default=None, help="XLA flags (default: the configs')")
  args = parser.parse_args(argv)
  apply_platform(args.xla_flags)

  from launch.sweep import load_config_module

  module, arg = load_config_module(args.config, required=("get_config",))
  config = module.get_config(arg)
  if config.get("task") != "detection":
    parser.error(f"{args.config} is not a detector config (task={config.get('task')!r})")
  config.data.height, config.data.width = args.height, args.width
  report = measure(config, args.batch)
  report["config"] = args.config
  total_state = report["parameter_bytes"] + report["optimizer_state_bytes"]
  print(f"{args.config} at {'x'.join(map(str, report['input']))}, batch {args.batch}:")
  print(f"  parameters       {report['parameters']:,} ({_gb(report['parameter_bytes'])} float32)")
  print(f"  optimizer state  {_gb(report['optimizer_state_bytes'])}")
  print(f"  params + state   {_gb(total_state)} (x2 while a step runs: gradients and updates)")
  print(f"  XLA temporaries  {_gb(report['xla_temp_bytes'])} (activations and workspace at peak)")
  print(f"  peak RSS         {_gb(report['peak_rss_bytes'])}")
  print(f"  compile {report['compile_seconds']:.0f} s, one step {report['step_seconds']:.1f} s")
  if args.out:
    Path(args.out).write_text(json.dumps(report, indent=2))
  return report


if __name__ == "__main__":
  main()
