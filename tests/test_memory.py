"""launch/memory.py: the memory report of one detector training step."""

from configs import semisup
from launch import memory


def test_memory_report_of_a_tiny_step():
  config = semisup.get_config("tiny")
  report = memory.measure(config, batch=2)
  assert report["input"] == [config.data.height, config.data.width, len(config.data.channels)]
  assert report["parameter_bytes"] == 4 * report["parameters"] > 0
  # Adam keeps two moments per parameter (plus a step count).
  assert 2 * report["parameter_bytes"] <= report["optimizer_state_bytes"] < 2.1 * report["parameter_bytes"]
  assert report["xla_temp_bytes"] > 0 and report["peak_rss_bytes"] > report["xla_temp_bytes"]
  assert report["loss"] > 0
