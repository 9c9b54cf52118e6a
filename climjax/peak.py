"""The machine's fp32 peak: nominal from the CPU's microarchitecture, measured by an FMA loop.

Used by launch/bench.py for its `fraction_of_peak`. No JAX import, so it can run
before `climjax.platform.apply()`.

Nominal: cores x clock x FLOP/cycle, where FLOP/cycle = FMA units x fp32 lanes
per unit x 2, from the vendor, family and model in /proc/cpuinfo (`FMA_UNITS`
says what each microarchitecture is taken to have). The clock is cpufreq's
`cpuinfo_max_freq` (the highest clock the OS may run, turbo included) where the
kernel exposes it, else the largest "cpu MHz" of /proc/cpuinfo -- under a
hypervisor that is the host's base (TSC) clock, and cores may run faster, so
`measure_clock_ghz` also times the core itself (a chain of dependent adds).

Measured: twelve independent vector accumulators (enough to cover a 4-cycle FMA
latency on two ports) of `a = a * m + c`, compiled here with `cc -O2
-march=native` into a shared library run on N pthreads. The multiplier, addend
and start values are read at run time through a volatile pointer, so no compiler
can fold the loop, and the summed result is checked against its closed form (an
optimised-away or shortened loop gives another sum: `PeakError`). With m = 1 and
c = 1 every value is a small integer, exact in fp32, so the check is exact.
The rate is FLOPs per thread CPU second summed over threads: the cores' own
speed while they run the loop, which other processes on a shared machine do
not drag down (wall-clock rates are recorded beside it).

Sanity: a measured peak above 1.5x the nominal at the faster of the listed and
the measured clock is an error (`PeakError`), and `machine_peak` then uses the
nominal figure.
"""

from __future__ import annotations

import ctypes
import functools
import os
import random
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

ACCUMULATORS = 12
BLOCK = 65536  # loop iterations between the subtractions that keep values small
# A measured peak above this multiple of the nominal one is an error, not a number.
SANITY_LIMIT = 1.5
RELEVANT_FLAGS = (
  "sse2", "avx", "fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
  "avx_vnni", "amx_tile", "amx_bf16", "asimd", "sve",
)  # fmt: skip

_SOURCE = r"""
#include <pthread.h>
#include <time.h>

typedef float vec __attribute__((vector_size(VEC_BYTES)));
#define LANES ((int)(VEC_BYTES / sizeof(float)))

struct job {
  long blocks;
  const volatile float *params; /* m, c, d, start: unknown to the compiler */
  pthread_barrier_t *barrier;
  double *out;                  /* wall start, wall end, thread CPU seconds, sum */
};

static double seconds(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static vec splat(float x) {
  vec v;
  for (int l = 0; l < LANES; l++) v[l] = x;
  return v;
}

void *climjax_fma_work(void *arg) {
  struct job *job = arg;
  const vec m = splat(job->params[0]), c = splat(job->params[1]), d = splat(job->params[2]);
  const float s = job->params[3];
  vec a0 = splat(s), a1 = splat(s + 1), a2 = splat(s + 2), a3 = splat(s + 3);
  vec a4 = splat(s + 4), a5 = splat(s + 5), a6 = splat(s + 6), a7 = splat(s + 7);
  vec a8 = splat(s + 8), a9 = splat(s + 9), a10 = splat(s + 10), a11 = splat(s + 11);
  pthread_barrier_wait(job->barrier);
  double wall0 = seconds(CLOCK_MONOTONIC), cpu0 = seconds(CLOCK_THREAD_CPUTIME_ID);
  for (long b = 0; b < job->blocks; b++) {
    for (long i = 0; i < BLOCK; i++) {
      a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c;
      a4 = a4 * m + c; a5 = a5 * m + c; a6 = a6 * m + c; a7 = a7 * m + c;
      a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;
    }
    a0 -= d; a1 -= d; a2 -= d; a3 -= d; a4 -= d; a5 -= d;
    a6 -= d; a7 -= d; a8 -= d; a9 -= d; a10 -= d; a11 -= d;
  }
  double cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0, wall1 = seconds(CLOCK_MONOTONIC);
  vec t = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
  double sum = 0.0;
  for (int l = 0; l < LANES; l++) sum += t[l];
  job->out[0] = wall0; job->out[1] = wall1; job->out[2] = cpu; job->out[3] = sum;
  return 0;
}

/* The core clock: dependent register-register adds retire one per cycle on every
   x86 and ARM core (unlike add-immediate chains, which some renamers fold). */
double climjax_clock_ghz(long iters, const volatile long *one) {
  long x = 0, y = *one;
  double cpu0 = seconds(CLOCK_THREAD_CPUTIME_ID);
  for (long i = 0; i < iters; i++) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
                     "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0" : "+r"(x) : "r"(y));
#elif defined(__aarch64__)
    __asm__ volatile("add %0, %0, %1\n\tadd %0, %0, %1\n\tadd %0, %0, %1\n\tadd %0, %0, %1\n\t"
                     "add %0, %0, %1\n\tadd %0, %0, %1\n\tadd %0, %0, %1\n\tadd %0, %0, %1"
                     : "+r"(x) : "r"(y));
#else
    return -1.0;
#endif
  }
  double cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0;
  return x == 8 * iters * y ? 8.0 * (double)iters / cpu / 1e9 : -1.0;
}

int climjax_fma_run(int threads, long blocks, const float *params, double *out) {
  pthread_t ids[threads];
  struct job jobs[threads];
  pthread_barrier_t barrier;
  if (pthread_barrier_init(&barrier, 0, (unsigned)threads)) return -1;
  int started = 0, rc = 0;
  for (int t = 0; t < threads; t++) {
    jobs[t] = (struct job){blocks, params, &barrier, out + 4 * t};
    if (t > 0) {
      if (pthread_create(&ids[t], 0, climjax_fma_work, &jobs[t])) { rc = -2; break; }
      started++;
    }
  }
  if (rc == 0) climjax_fma_work(&jobs[0]);  /* thread 0 is the caller */
  for (int t = 1; t <= started; t++) pthread_join(ids[t], 0);
  pthread_barrier_destroy(&barrier);
  return rc;
}
"""


class PeakError(RuntimeError):
  """The FMA loop's figure cannot be trusted (or could not be measured)."""


# ---------------------------------------------------------------------------
# CPU facts and the nominal peak.

# (FMA units, bits per unit) by microarchitecture. Intel server AVX-512 parts are
# taken to have two 512-bit FMA units: true of Xeon Platinum and Gold 6xxx, but
# Xeon Bronze, Silver and most Gold 5xxx Skylake-SP/Cascade Lake SKUs have one
# (the family/model numbers cannot tell them apart), which measures at half.
FMA_UNITS = {
  "Intel Skylake-SP/Cascade Lake/Cooper Lake": (2, 512),
  "Intel Ice Lake-SP": (2, 512),
  "Intel Sapphire/Emerald/Granite Rapids": (2, 512),
  "Intel Xeon Phi": (2, 512),
  "Intel client AVX-512 (Ice/Tiger/Rocket Lake)": (1, 512),
  "Intel AVX2": (2, 256),  # Haswell onward; hybrid parts' E-cores have less
  "Intel AVX (no FMA)": (1, 256),  # one multiply and one add port: FLOPs of one FMA unit
  "AMD Zen/Zen+": (2, 128),  # AVX2 split into 128-bit halves
  "AMD Zen 2": (2, 256),
  "AMD Zen 3": (2, 256),
  "AMD Zen 4": (2, 256),  # AVX-512 executed on 256-bit datapaths: one zmm FMA per cycle
  "AMD Zen 5": (2, 512),  # desktop (Granite Ridge), server (Turin), Strix Halo
  "AMD Zen 5 mobile": (2, 256),  # Strix Point, Krackan Point: 256-bit datapaths
  "x86 AVX-512": (2, 512),
  "x86 AVX2+FMA": (2, 256),
  "x86 AVX": (1, 256),
  "x86 SSE": (1, 128),
  "ARM NEON": (2, 128),
  "unknown": (1, 128),
}

_INTEL_MODELS = {
  0x55: "Intel Skylake-SP/Cascade Lake/Cooper Lake",
  0x6A: "Intel Ice Lake-SP",
  0x6C: "Intel Ice Lake-SP",
  0x8F: "Intel Sapphire/Emerald/Granite Rapids",
  0xCF: "Intel Sapphire/Emerald/Granite Rapids",
  0xAD: "Intel Sapphire/Emerald/Granite Rapids",
  0xAE: "Intel Sapphire/Emerald/Granite Rapids",
  0x57: "Intel Xeon Phi",
  0x85: "Intel Xeon Phi",
  0x7D: "Intel client AVX-512 (Ice/Tiger/Rocket Lake)",
  0x7E: "Intel client AVX-512 (Ice/Tiger/Rocket Lake)",
  0x8C: "Intel client AVX-512 (Ice/Tiger/Rocket Lake)",
  0x8D: "Intel client AVX-512 (Ice/Tiger/Rocket Lake)",
  0xA7: "Intel client AVX-512 (Ice/Tiger/Rocket Lake)",
}


def microarchitecture(vendor: str, family: int, model: int, flags) -> str:
  """A key of `FMA_UNITS` from the CPUID vendor, family and model (decimal, as
  /proc/cpuinfo lists them) and the feature flags; by the flags when unknown."""
  flags = set(flags)
  if vendor == "GenuineIntel" and family == 6:
    if model in _INTEL_MODELS and "avx512f" in flags:
      return _INTEL_MODELS[model]
    if "avx2" in flags and "fma" in flags:
      return "Intel AVX2"
    if "avx" in flags:
      return "Intel AVX (no FMA)"
  if vendor in ("AuthenticAMD", "HygonGenuine"):
    if family == 0x17:
      return "AMD Zen/Zen+" if model < 0x30 else "AMD Zen 2"
    if family == 0x19:  # Zen 3 and Zen 4 share the family; only Zen 4 has AVX-512
      return "AMD Zen 4" if "avx512f" in flags else "AMD Zen 3"
    if family == 0x1A:
      return "AMD Zen 5 mobile" if 0x20 <= model < 0x30 or 0x60 <= model < 0x70 else "AMD Zen 5"
  if "avx512f" in flags:
    return "x86 AVX-512"
  if "avx2" in flags and "fma" in flags:
    return "x86 AVX2+FMA"
  if "avx" in flags:
    return "x86 AVX"
  if "sse2" in flags:
    return "x86 SSE"
  if "asimd" in flags:
    return "ARM NEON"
  return "unknown"


def flops_per_cycle(arch: str) -> int:
  """fp32 FLOPs per cycle per core: units x lanes x 2 (an FMA is two)."""
  units, bits = FMA_UNITS[arch]
  return units * bits // 32 * 2


def _clock_ghz(cpuinfo: str, sysfs: bool) -> tuple[float, str]:
  if sysfs:
    try:
      path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
      return int(path.read_text()) / 1e6, "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
      pass
  mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)]
  if mhz:
    return max(mhz) / 1e3, "/proc/cpuinfo cpu MHz"
  return float("nan"), "unknown"


def cpu_facts(cpuinfo: str | None = None, cores: int | None = None) -> dict:
  """Model, vendor/family/model, relevant flags, clock and microarchitecture of this
  machine (Linux: /proc/cpuinfo; or of `cpuinfo`'s text, clock included), and the
  cores this process may use."""
  this_machine = cpuinfo is None
  if this_machine:
    try:
      cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
      cpuinfo = ""

  def field(name: str, default: str = "") -> str:
    found = re.search(rf"^{name}\s*:\s*(.*)$", cpuinfo, re.M)
    return found.group(1).strip() if found else default

  flags = set((field("flags") or field("Features")).split())
  vendor = field("vendor_id", "unknown")
  family, model = int(field("cpu family", "0") or 0), int(field("model", "0") or 0)
  arch = microarchitecture(vendor, family, model, flags)
  clock, clock_source = _clock_ghz(cpuinfo, sysfs=this_machine)
  units, bits = FMA_UNITS[arch]
  lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags or "avx" in flags else 4
  return {
    "cpu": field("model name", "unknown"),
    "vendor": vendor,
    "family": family,
    "model": model,
    "flags": [f for f in RELEVANT_FLAGS if f in flags],
    "microarchitecture": arch,
    "fma_units": units,
    "fma_bits": bits,
    "flops_per_cycle": flops_per_cycle(arch),
    "cores": cores if cores is not None else len(os.sched_getaffinity(0)),
    "clock_ghz": clock,
    "clock_source": clock_source,
    "fp32_lanes": lanes,
    "fma": "fma" in flags or "avx512f" in flags or "asimd" in flags,
  }


def nominal_peak(facts: dict, threads: int | None = None, clock_ghz: float | None = None) -> float:
  """GFLOP/s of `threads` cores (default: all of facts["cores"]) at `clock_ghz`
  (default: facts' listed clock)."""
  cores = facts["cores"] if threads is None else threads
  return cores * (clock_ghz or facts["clock_ghz"]) * facts["flops_per_cycle"]


# ---------------------------------------------------------------------------
# The measured FMA loop.


def _vector_bytes(flags) -> int:
  flags = set(flags)
  return 64 if "avx512f" in flags else 32 if "avx" in flags else 16


def count_fma_instructions(disassembly: str) -> int:
  """Packed fp32 FMA instructions in `objdump -d` text (x86 vfmadd*ps, ARM fmla .4s)."""
  return len(re.findall(r"\bvf(?:n)?m(?:add|sub)\w*ps\b|\bfmla\s+v\d+\.4s", disassembly))


@functools.cache
def _library(vec_bytes: int) -> tuple[ctypes.CDLL, int | None]:
  """The FMA loop compiled for `vec_bytes`-byte vectors, and the packed FMA
  instructions in its disassembly (None without objdump)."""
  cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
  if cc is None:
    raise PeakError("no C compiler (cc, gcc or clang) to build the FMA loop")
  tmp = tempfile.mkdtemp(prefix="climjax_peak_")
  try:
    src, lib = Path(tmp, "fma.c"), Path(tmp, "fma.so")
    src.write_text(_SOURCE)
    command = [cc, "-O2", "-march=native", "-ffp-contract=fast", "-fPIC", "-shared", "-pthread"]
    command += [f"-DVEC_BYTES={vec_bytes}", f"-DBLOCK={BLOCK}L"]
    build = subprocess.run([*command, str(src), "-o", str(lib)], capture_output=True, text=True)
    if build.returncode != 0:
      raise PeakError(f"{' '.join(command)} failed: {build.stderr.strip()[-500:]}")
    fmas = None
    if objdump := shutil.which("objdump"):
      dis = subprocess.run([objdump, "-d", str(lib)], capture_output=True, text=True)
      if dis.returncode == 0:
        fmas = count_fma_instructions(dis.stdout)
    handle = ctypes.CDLL(str(lib))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  handle.climjax_fma_run.argtypes = [
    ctypes.c_int,
    ctypes.c_long,
    ctypes.POINTER(ctypes.c_float),
    ctypes.POINTER(ctypes.c_double),
  ]
  handle.climjax_fma_run.restype = ctypes.c_int
  handle.climjax_clock_ghz.argtypes = [ctypes.c_long, ctypes.POINTER(ctypes.c_long)]
  handle.climjax_clock_ghz.restype = ctypes.c_double
  return handle, fmas


def expected_sum(blocks: int, lanes: int, m: float, c: float, d: float, start: float) -> float:
  """The loop's result per thread in closed form, for m = 1 and integer c, d, start
  (every intermediate is then an integer below 2^24, exact in fp32)."""
  if m != 1.0:
    raise ValueError("the closed form assumes m = 1")
  return lanes * sum(start + j + blocks * (BLOCK * c - d) for j in range(ACCUMULATORS))


def check_sums(sums, expected: float) -> None:
  """Raises PeakError unless every thread's sum is the closed form's."""
  wrong = [s for s in sums if s != expected]
  if wrong:
    raise PeakError(
      f"FMA loop returned {wrong[0]!r}, expected {expected!r}: the compiled loop did not do "
      "the work it was timed for (folded or shortened), so its rate is not a peak"
    )


def check_against_nominal(measured: float, nominal: float, limit: float = SANITY_LIMIT) -> None:
  """Raises PeakError when a measured peak exceeds `limit` x the nominal one."""
  if not measured > 0 or measured > limit * nominal:
    raise PeakError(
      f"measured FMA peak {measured:,.0f} GFLOP/s is not within (0, {limit} x nominal "
      f"{nominal:,.0f}]: the loop or the nominal's microarchitecture is wrong"
    )


def _run(threads: int, blocks: int, vec_bytes: int) -> dict:
  lib, _ = _library(vec_bytes)
  start = float(random.randint(1, 1000))  # changes per call: a cached or faked sum fails
  m, c, d = 1.0, 1.0, float(BLOCK - 1)
  params = (ctypes.c_float * 4)(m, c, d, start)
  out = (ctypes.c_double * (4 * threads))()
  if lib.climjax_fma_run(threads, blocks, params, out) != 0:
    raise PeakError(f"could not start {threads} threads for the FMA loop")
  rows = [out[4 * t : 4 * t + 4] for t in range(threads)]
  check_sums([r[3] for r in rows], expected_sum(blocks, vec_bytes // 4, m, c, d, start))
  flops = blocks * BLOCK * ACCUMULATORS * (vec_bytes // 4) * 2  # per thread
  wall = max(r[1] for r in rows) - min(r[0] for r in rows)
  return {
    "cpu_gflops": sum(flops / max(r[2], 1e-9) for r in rows) / 1e9,
    "wall_gflops": threads * flops / max(wall, 1e-9) / 1e9,
    "seconds": wall,
  }


def measure(threads: int = 1, seconds: float = 0.3, reps: int = 3, flags=None) -> dict:
  """The FMA loop on `threads` threads for about `seconds` in all, best of `reps`.

  Returns {"gflops" (the peak: per-thread CPU-time rates summed), "cpu_gflops",
  "wall_gflops", "threads", "vector_bits", "fma_instructions", "seconds"}.
  """
  available = len(os.sched_getaffinity(0))
  if not 1 <= threads <= available:
    # More threads than cores would time-slice, and CPU-time rates would overcount.
    raise ValueError(f"threads must be in [1, {available}] (this process's cores), got {threads}")
  vec_bytes = _vector_bytes(cpu_facts()["flags"] if flags is None else flags)
  probe = _run(threads, 4, vec_bytes)  # also warms the clock up
  per_block = probe["seconds"] / 4
  blocks = max(1, min(2**22, int(seconds / reps / max(per_block, 1e-7))))
  runs = [_run(threads, blocks, vec_bytes) for _ in range(reps)]
  best_cpu = max(r["cpu_gflops"] for r in runs)
  return {
    "gflops": best_cpu,
    "cpu_gflops": best_cpu,
    "wall_gflops": max(r["wall_gflops"] for r in runs),
    "threads": threads,
    "vector_bits": vec_bytes * 8,
    "fma_instructions": _library(vec_bytes)[1],
    "seconds": sum(r["seconds"] for r in runs) + probe["seconds"],
  }


def measure_clock_ghz(seconds: float = 0.05) -> float | None:
  """This core's clock while busy (GHz, best of three), from a chain of dependent
  adds timed in thread CPU time; None where the chain is not written (not x86/ARM)."""
  lib, _ = _library(_vector_bytes(cpu_facts()["flags"]))
  one = ctypes.c_long(1)
  probe = lib.climjax_clock_ghz(1_000_000, ctypes.byref(one))  # ~2 ms; also warms the clock
  if probe <= 0:
    return None
  iters = max(1, int(seconds / 3 * probe * 1e9 / 8))
  return max(lib.climjax_clock_ghz(iters, ctypes.byref(one)) for _ in range(3))


def machine_peak(facts: dict, threads: int, seconds: float = 0.3) -> dict:
  """The peak the fractions of peak use, with the figures it was chosen from.

  The measured FMA loop on `threads` threads when it passes the checks, else the
  nominal peak at the listed clock; "peak_used" says which, "peak_error" why.
  """
  nominal = nominal_peak(facts, threads)
  out: dict = {"peak_nominal_gflops": nominal, "peak_measured_gflops": None}
  try:
    clock = measure_clock_ghz()
    out["clock_measured_ghz"] = clock
    # The sanity bound's clock: turbo may lift the cores above the listed one.
    bound_clock = max(facts["clock_ghz"], clock or 0.0)
    out["peak_nominal_at_measured_clock_gflops"] = nominal_peak(facts, threads, clock)
    run = measure(threads, seconds)
    check_against_nominal(run["gflops"], nominal_peak(facts, threads, bound_clock))
    out |= {
      "peak_measured_gflops": run["gflops"],
      "peak_measured_wall_gflops": run["wall_gflops"],
      "fma_vector_bits": run["vector_bits"],
      "fma_instructions": run["fma_instructions"],
    }
    if threads > 1:
      one = measure(1, seconds)
      check_against_nominal(one["gflops"], nominal_peak(facts, 1, bound_clock))
      out["peak_measured_one_core_gflops"] = one["gflops"]
    else:
      out["peak_measured_one_core_gflops"] = run["gflops"]
  except PeakError as e:
    out["peak_error"] = str(e)
  used = "nominal" if "peak_error" in out or out["peak_measured_gflops"] is None else "measured"
  out["peak_used"] = used
  out["peak_gflops"] = out["peak_measured_gflops"] if used == "measured" else nominal
  return out
