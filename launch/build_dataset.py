"""Builds a climjax tfds dataset (array_record) from synthetic data, netCDF or ExtremeWeather files.

  python launch/build_dataset.py --task=tc --source=synthetic --data_dir=runs/tfds
  python launch/build_dataset.py --task=tc --source=netcdf --input='cam5/*.nc' \\
      --variables_map=msl:PSL,tcw:TMQ --data_dir=runs/tfds
  python launch/build_dataset.py --task=detection --source=extremeweather \\
      --input='climo_*.h5' --data_dir=runs/tfds
  python launch/build_dataset.py --task=detection --source=synthetic --height=768 --width=1152 \\
      --num_train=8 --num_test=2
  python launch/build_dataset.py --task=wf --source=netcdf --input='cam5/*.nc'
  python launch/build_dataset.py --task=detection --source=synthetic --tc_rate=2 --ar_intensity=1.2

Tasks: tc, ar, wf (the classifier patches, `climate_patches`) and detection
(whole 16-channel snapshots with boxes, `extreme_weather`). Sizes and seed
default to those of the experiment config (configs/<task>.py, configs/semisup.py
for detection; `--config_arg=tiny` picks its tiny variant), so the dataset built
here is the one `launch/main.py` with that config trains on; the command to do
that is printed at the end. netCDF files are labelled by the TECA-style
heuristics (`climjax.data.heuristics.label_events`: TD, TC, ETC and AR boxes for
detection, fronts for WF patches). Synthetic detection data take the event knobs
--tc_rate, --td_rate, --etc_rate, --ar_rate, --tc_intensity, --etc_intensity and
--ar_intensity (multipliers of the default climate; `synthetic.EVENT_KNOBS`);
`launch/synthetic_run.py` writes such a climate as netCDF files. For netCDF and ExtremeWeather input, --num_train
and --num_test cap the examples per split and --test_fraction sets the share
of the snapshots (the last ones) held out for testing; the dataset is named by
the examples it holds (`...-train26-test6-...` where 26 + 6 were found) and
the printed train command gives those counts. --height/--width apply to
synthetic detection snapshots only: netCDF and ExtremeWeather input keeps its
grid, and the options are refused there. A NaN or Inf in a field of netCDF or
ExtremeWeather input is refused; --nonfinite=mask fills each with the
snapshot's mean of that field instead, counts them in the log and in the
dataset's metadata, and ends the dataset's name with `-nonfinite_masked`.
Heuristic labels whose criteria were skipped for want of a variable (no
Z200/Z1000: no thickness test) are counted per class in the log, in the
summary (`reduced_criteria`) and in the dataset's metadata;
--require_all_criteria refuses such input instead and ends the name with
`-all_criteria`.

netCDF files from public archives (ERA5, NCEP GFS / GRIB converted to netCDF,
CMIP, CAM5) are read without --variables_map: variables are found by CF
standard_name and the archives' names, U850/T500/Z200/... are taken from
pressure levels, and units are converted (README, "Reading real archives").

Progress goes to stdout. A problem with the input ends the run with one line,
`climjax: error: <file>: variable <name>: <what>`, and exit status 2. tfds
writes into an `incomplete.*` directory that is renamed only when every split
is written, so a failed build leaves no partial dataset and never touches a
dataset built before.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import time

# configs/ lives beside climjax/ at the repository root, not inside the package.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from climjax.data.synthetic import EVENT_KNOBS  # noqa: E402 - after the path is set

TASKS = ("tc", "ar", "wf", "detection")
SOURCES = ("synthetic", "netcdf", "extremeweather")
CONFIG_MODULES = {
  "tc": "configs.tc",
  "ar": "configs.ar",
  "wf": "configs.wf",
  "detection": "configs.semisup",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description="Build a climjax tfds dataset.",
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--task", required=True, choices=TASKS)
  parser.add_argument("--source", default="synthetic", choices=SOURCES)
  parser.add_argument("--input", default="", help="netCDF / ExtremeWeather file, directory or glob")
  parser.add_argument(
    "--data_dir", default=None, help="where datasets go (config default: runs/tfds)"
  )
  parser.add_argument(
    "--variables_map", default="", help="names in the files -> CAM5 names, e.g. msl:PSL,tcw:TMQ"
  )
  parser.add_argument(
    "--box_order", default="", choices=("", "yxyx", "xxyy"), help="ExtremeWeather box columns"
  )
  parser.add_argument(
    "--test_fraction", type=float, default=None, help="share of snapshots held out"
  )
  parser.add_argument(
    "--nonfinite", default=None, choices=("refuse", "mask"),
    help="file sources: refuse a NaN or Inf in a field (default), or mask it (filled, counted)",
  )  # fmt: skip
  parser.add_argument(
    "--require_all_criteria", action="store_true", default=None,
    help="netcdf: refuse input lacking a heuristic criterion's variables (default: count them)",
  )  # fmt: skip
  parser.add_argument("--num_train", type=int, default=None, help="examples (synthetic) or cap")
  parser.add_argument("--num_test", type=int, default=None, help="examples (synthetic) or cap")
  parser.add_argument("--seed", type=int, default=None)
  parser.add_argument("--height", type=int, default=None, help="detection, synthetic: grid rows")
  parser.add_argument("--width", type=int, default=None, help="detection, synthetic: grid columns")
  parser.add_argument("--max_boxes", type=int, default=None, help="detection: boxes per image")
  parser.add_argument("--config_arg", default=None, help="size of the config: default, tiny, paper")
  for knob in EVENT_KNOBS:
    parser.add_argument(
      f"--{knob}", type=float, default=None, help="detection, synthetic: times the default"
    )
  return parser.parse_args(argv)


def data_config(args: argparse.Namespace):
  """(config, its `data` block with the command line's choices on top, the block's own fields)."""
  config = importlib.import_module(CONFIG_MODULES[args.task]).get_config(args.config_arg)
  data = config.data
  own_fields = set(data.keys())  # what the experiment config itself defines
  data.unlock()
  overrides = {
    "source": args.source,
    "input": args.input,
    "variables_map": args.variables_map,
    "box_order": args.box_order,
    "test_fraction": args.test_fraction,
    "nonfinite": args.nonfinite,
    "require_all_criteria": args.require_all_criteria,
    "num_train": args.num_train,
    "num_test": args.num_test,
    "seed": args.seed,
    "data_dir": args.data_dir,
    "height": args.height,
    "width": args.width,
    "max_boxes": args.max_boxes,
    **{knob: getattr(args, knob) for knob in EVENT_KNOBS},
  }
  for key, value in overrides.items():
    if value is not None and (value != "" or key in data):
      data[key] = value
  if "data_dir" not in data:
    from climjax.data import tfds_builders

    data["data_dir"] = tfds_builders.DEFAULT_DATA_DIR
  return config, data, own_fields


def train_command(args: argparse.Namespace, data, always: tuple[str, ...] = ()) -> str:
  """The launch/main.py command line that trains on this dataset.

  It carries the options given here, and the fields in `always` whatever was given.
  """
  config = f"configs/{'semisup' if args.task == 'detection' else args.task}.py"
  if args.config_arg:
    config += f":{args.config_arg}"
  parts = ["python", "launch/main.py", f"--config={config}"]
  for key in ("source", "input", "data_dir", "num_train", "num_test", "seed", "variables_map",
              "box_order", "test_fraction", "nonfinite", "require_all_criteria", "height",
              "width", "max_boxes", *EVENT_KNOBS):  # fmt: skip
    if key in data and (key in always or getattr(args, key, None) not in (None, "")):
      value = data[key]
      if key in ("input", "data_dir"):  # the dataset is named after the absolute input path
        value = os.path.abspath(os.path.expanduser(value))
      parts.append(f"--config.data.{key}={value}")
  return " ".join(shlex.quote(p) for p in parts)


def describe(source, task: str) -> str:
  """'N patches, P positive' or 'N snapshots, B boxes' (boxes only where they are cheap to count)."""
  import numpy as np

  from climjax.data import tfds_builders

  n = len(source)
  decoded = isinstance(source, tfds_builders.DecodedSource)
  if task != "detection":
    labels = source.arrays["label"] if decoded else [source[i]["label"] for i in range(n)]
    return f"{n} patches, {int(np.sum(labels))} positive"
  # Counting boxes of undecoded snapshots would read every image again.
  return f"{n} snapshots" + (f", {int(source.arrays['mask'].sum())} boxes" if decoded else "")


def check_grid_options(args: argparse.Namespace) -> None:
  """Refuses --height/--width where nothing would use them (they were silently ignored)."""
  given = [f"--{k}" for k in ("height", "width") if getattr(args, k) is not None]
  if not given:
    return
  options = "/".join(given)
  if args.task != "detection":
    raise ValueError(
      f"{options} set the grid of synthetic detection snapshots; {args.task} patches have a "
      "fixed shape (drop the option)"
    )
  if args.source != "synthetic":
    raise ValueError(
      f"{options} apply to synthetic snapshots; {args.source} input is read on its files' own "
      "grid, which the printed train command carries (drop the option, or regrid the files)"
    )


def _builder(args: argparse.Namespace, data):
  from climjax.data import tfds_builders

  if args.task == "detection":
    return tfds_builders.detection_builder(data), "image"
  return tfds_builders.patches_builder(data, args.task), "patch"


def name_by_counts(args: argparse.Namespace, data, builder, counts: dict[str, int], built: bool):
  """(data, builder) of the dataset named by the examples it holds, moving a fresh build there.

  File sources take num_train/num_test as caps; a build from 26 + 6 patches
  found is named `...-train26-test6-...`, not after the caps (20000, 4000), and
  the train command says num_train=26, num_test=6 to find it. A dataset found
  already built keeps its name; where one of the real counts exists already, it
  is kept and the fresh build removed.
  """
  import json
  import shutil

  if data["source"] == "synthetic" or not built:
    return data, builder
  if (counts["train"], counts["test"]) == (data["num_train"], data["num_test"]):
    return data, builder
  named = data.copy_and_resolve_references()
  named.unlock()
  named["num_train"], named["num_test"] = counts["train"], counts["test"]
  target, _ = _builder(args, named)
  old, new = str(builder.data_dir), str(target.data_dir)
  if os.path.exists(os.path.join(new, "dataset_info.json")):
    shutil.rmtree(old)
  else:
    os.makedirs(os.path.dirname(new), exist_ok=True)
    os.rename(old, new)
    info_path = os.path.join(new, "dataset_info.json")
    with open(info_path) as f:
      info = json.load(f)
    info["configName"] = target.builder_config.name
    with open(info_path, "w") as f:
      json.dump(info, f, indent=2)
  try:
    os.rmdir(os.path.dirname(old))  # the caps' config directory, now empty
  except OSError:
    pass
  print(f"[climjax] named {target.builder_config.name} by the examples it holds", flush=True)
  return named, target


def build(args: argparse.Namespace) -> dict:
  """Builds (or finds) the dataset; returns a summary of what is there."""
  from climjax.data import tfds_builders

  check_grid_options(args)
  _, data, own_fields = data_config(args)
  builder, key = _builder(args, data)
  path = str(builder.data_dir)
  built = not os.path.exists(os.path.join(path, "dataset_info.json"))
  print(f"[climjax] building {builder.name}/{builder.builder_config.name} in {path}", flush=True)
  t0 = time.time()
  sources, _ = tfds_builders.prepare(builder, key=key)
  summary = {"seconds": time.time() - t0, "splits": {}}
  # What the heuristic labels rest on, per class (netcdf; {} for other sources).
  summary["reduced_criteria"] = dict(builder.info.metadata.items()).get("criteria", {})
  for split, source in sources.items():
    summary["splits"][split] = describe(source, args.task)
  counts = {split: len(source) for split, source in sources.items()}
  del sources  # memory maps of the files that may move
  data, builder = name_by_counts(args, data, builder, counts, built)
  summary["path"] = str(builder.data_dir)
  counted = ("num_train", "num_test") if data["source"] != "synthetic" else ()
  summary["train_command"] = train_command(args, data, always=counted)
  if args.task == "detection" and data["source"] != "synthetic":
    # The detector's input size is the files' grid, which its config must state.
    cfg = builder.builder_config
    summary["train_command"] += (
      f" --config.data.height={cfg.height} --config.data.width={cfg.width}"
    )
  summary["missing_fields"] = [
    k
    for k in ("variables_map", "box_order", "test_fraction", "nonfinite", "require_all_criteria",
              *EVENT_KNOBS)  # fmt: skip
    if getattr(args, k) not in (None, "") and k not in own_fields
  ]
  return summary


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  # tfds logs every custom config at WARNING; our progress lines say what matters.
  from absl import logging

  logging.set_verbosity(logging.ERROR)
  from climjax.data.errors import DataError

  try:
    summary = build(args)
  except (DataError, ValueError) as e:
    print(f"climjax: error: {e}", file=sys.stderr)
    return 2
  for split, described in summary["splits"].items():
    print(f"[climjax] {split}: {described}")
  reduced = summary["reduced_criteria"]
  if any(c["reduced"] for c in reduced.values()):
    from climjax.data.heuristics import criteria

    print(f"[climjax] labels on reduced criteria: {criteria.describe(reduced)}")
  print(f"[climjax] dataset in {summary['path']} ({summary['seconds']:.0f} s)")
  print(f"[climjax] train on it with: {summary['train_command']}")
  if summary["missing_fields"]:
    fields = ", ".join(f"data.{k}" for k in summary["missing_fields"])
    print(
      f"[climjax] note: the experiment config has no {fields}; add the field(s) to it to "
      "train on this dataset, which they help name"
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
