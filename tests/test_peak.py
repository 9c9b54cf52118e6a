"""The machine peak (climjax/peak.py): a measured FMA loop that cannot be folded, checked
against the nominal peak of the CPU's microarchitecture; bench.py's thread-scaling table."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil

import pytest

from climjax import peak

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_cc = pytest.mark.skipif(
  not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")),
  reason="no C compiler",
)


def _cpuinfo(vendor: str, family: int, model: int, flags: str, mhz: float = 2600.0) -> str:
  return (
    f"vendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
    f"model name\t: Test CPU\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n"
  )


AVX2 = "sse2 avx fma avx2"
AVX512 = AVX2 + " avx512f avx512bw avx512_bf16"


@pytest.mark.parametrize(
  ("vendor", "family", "model", "flags", "arch", "per_cycle"),
  [
    ("AuthenticAMD", 0x19, 0x11, AVX512, "AMD Zen 4", 32),  # Genoa: 256-bit datapaths
    ("AuthenticAMD", 0x19, 0x61, AVX512, "AMD Zen 4", 32),  # Raphael
    ("AuthenticAMD", 0x19, 0x01, AVX2, "AMD Zen 3", 32),  # Milan
    ("AuthenticAMD", 0x17, 0x31, AVX2, "AMD Zen 2", 32),  # Rome
    ("AuthenticAMD", 0x17, 0x01, AVX2, "AMD Zen/Zen+", 16),
    ("AuthenticAMD", 0x1A, 0x02, AVX512, "AMD Zen 5", 64),  # Turin
    ("AuthenticAMD", 0x1A, 0x24, AVX512, "AMD Zen 5 mobile", 32),  # Strix Point
    ("GenuineIntel", 6, 0x55, AVX512, "Intel Skylake-SP/Cascade Lake/Cooper Lake", 64),
    ("GenuineIntel", 6, 0x8F, AVX512, "Intel Sapphire/Emerald/Granite Rapids", 64),
    ("GenuineIntel", 6, 0x7E, AVX512, "Intel client AVX-512 (Ice/Tiger/Rocket Lake)", 32),
    ("GenuineIntel", 6, 0x3F, AVX2, "Intel AVX2", 32),  # Haswell
    ("GenuineIntel", 6, 0x2D, "sse2 avx", "Intel AVX (no FMA)", 16),  # Sandy Bridge
  ],
)
def test_nominal_knows_the_microarchitectures(vendor, family, model, flags, arch, per_cycle):
  facts = peak.cpu_facts(_cpuinfo(vendor, family, model, flags), cores=2)
  assert facts["microarchitecture"] == arch
  assert facts["flops_per_cycle"] == per_cycle
  assert facts["clock_ghz"] == 2.6 and facts["clock_source"] == "/proc/cpuinfo cpu MHz"
  assert peak.nominal_peak(facts) == pytest.approx(2 * 2.6 * per_cycle)
  assert peak.nominal_peak(facts, 1, clock_ghz=3.0) == pytest.approx(3.0 * per_cycle)
  assert "avx" in facts["flags"] and "avx512bw" not in facts["flags"]  # only the relevant ones


def test_a_wrong_sum_is_detected():
  expected = peak.expected_sum(blocks=10, lanes=16, m=1.0, c=1.0, d=peak.BLOCK - 1.0, start=7.0)
  assert expected == 16 * sum(7 + j + 10 for j in range(peak.ACCUMULATORS))
  peak.check_sums([expected, expected], expected)
  with pytest.raises(peak.PeakError, match="folded or shortened"):
    peak.check_sums([expected, expected - 16], expected)  # one thread one block short
  # A loop optimised away returns its start values.
  folded = peak.expected_sum(blocks=0, lanes=16, m=1.0, c=1.0, d=peak.BLOCK - 1.0, start=7.0)
  with pytest.raises(peak.PeakError):
    peak.check_sums([folded], expected)


def test_a_measured_peak_far_above_the_nominal_is_an_error():
  peak.check_against_nominal(470.0, 332.0)  # turbo above the listed clock: fine
  for measured in (35_391_709.0, 500.0, float("nan"), 0.0):  # bench.py's old folded loop, ...
    with pytest.raises(peak.PeakError):
      peak.check_against_nominal(measured, 332.0)


@needs_cc
def test_fma_loop_measures_near_the_nominal_peak():
  facts = peak.cpu_facts()
  clock = peak.measure_clock_ghz(seconds=0.05)
  run = peak.measure(threads=1, seconds=0.3, reps=3)
  assert run["seconds"] < 1.0
  # At the faster of the listed and the measured clock: under a hypervisor the listed
  # one is the base clock and the core may turbo well above it. Rates are per thread
  # CPU second, so another process on this core does not pull the figure down.
  nominal = peak.nominal_peak(facts, 1, max(facts["clock_ghz"], clock or 0.0))
  assert math.isfinite(run["gflops"])
  assert 0.3 * nominal <= run["gflops"] <= 1.5 * nominal, (run, nominal, facts)
  if run["fma_instructions"] is not None and "fma" in facts["flags"]:
    assert run["fma_instructions"] >= peak.ACCUMULATORS


def _bench():
  spec = importlib.util.spec_from_file_location("bench", os.path.join(REPO, "launch", "bench.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_thread_scaling_efficiency():
  bench = _bench()

  def run(rate, torch_rate, peak_gflops):
    row = {
      "flops_per_step": 1e9,
      "climjax_examples_per_second": rate,
      "climjax_gflops": rate,
      "fraction_of_peak": rate / peak_gflops,
      "torch_examples_per_second": torch_rate,
    }
    machine = {"peak_used": "measured", "peak_measured_gflops": peak_gflops}
    return {"tc": row, "machine": machine, "peak_gflops": peak_gflops}

  scaling = bench.thread_scaling({1: run(100.0, 80.0, 200.0), 2: run(150.0, 160.0, 400.0),
                                  4: run(240.0, 200.0, 800.0)})  # fmt: skip
  rows = {r["threads"]: r for r in scaling["steps"]["tc"]}
  assert rows[1]["climjax_efficiency"] == 1.0 and "climjax_step_efficiency" not in rows[1]
  assert rows[2]["climjax_efficiency"] == pytest.approx(0.75)
  assert rows[2]["torch_efficiency"] == pytest.approx(1.0)
  assert rows[4]["climjax_efficiency"] == pytest.approx(0.6)
  assert rows[4]["climjax_step_efficiency"] == pytest.approx(0.8)  # 240 / 150 / 2
  assert [p["peak_gflops"] for p in scaling["peak"]] == [200.0, 400.0, 800.0]
  table = bench._scaling_markdown(scaling)
  assert "| 2 | 150 | 1.50 | 0.75 | 0.75 | 160 | 1.00 | 0.38 |" in table
  argv = ["--only=tc", "--threads", "1,2", "--out=x.json", "--reps=2"]
  assert bench._without(argv, "--threads", "--out") == ["--only=tc", "--reps=2"]
