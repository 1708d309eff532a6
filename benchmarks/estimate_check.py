"""Is the estimate near what this host really spends? (docs/measurements.md, "Estimate vs this host")

This host has no energy sensor, so the reference is the profile's own busy power (peak_w - idle_w,
the `cpu-host` profile's 8 W) times the measured forward time of a batch (this thread's CPU time,
so that other processes on a shared host do not count): what the search's training energy uses too. For networks sampled from a space (default: the default `mlp` space on
digits-sized inputs, 1x8x8, 10 classes, the profile's batch size 32, one torch thread), it prints
estimate / (forward time x active power / batch) per network and checks every ratio is within 2x.

    python benchmarks/estimate_check.py                       # mlp space, 30 networks
    python benchmarks/estimate_check.py --space cnn --input 1x8x8 --networks 20
    python benchmarks/estimate_check.py --overheads           # dispatch overheads per runtime
    python benchmarks/estimate_check.py --seed 1 --networks 60 --csv timings.csv   # for calibrate --from

`--overheads` measures the per-operator-call and per-forward-call times this host's runtimes take
(the `RUNTIME_DEFAULTS` of nas/energy/coefficients.py): a chain of 64 tiny Linear+ReLU layers against
a chain of 1, at batch 1, in eager PyTorch, a traced TorchScript module and ONNX Runtime (one thread);
the time of an exact GELU call against a ReLU call (`call_weights`); and the arithmetic rate one thread attains (a 512x512 Linear at batch 32: the `cpu-host` profile's
`throughput.peak_macs_per_s`).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
from torch import nn

from nas.config import load_profile, load_space
from nas.energy.estimate import estimate_module
from nas.measurements import parse_input_shape
from nas.models import architecture_label, build_model
from nas.space import sample


def forward_time_s(run, x: torch.Tensor, min_s: float = 0.2, repeats: int = 7, clock=time.thread_time) -> float:
    """Median over `repeats` windows of the time of one call of `run(x)` (each window >= min_s).

    `clock` defaults to this thread's CPU time (time.thread_time): on a shared host, the time the
    forward pass really ran on a core, not the time it waited for one (torch runs one thread here).
    """
    for _ in range(20):
        run(x)
    n, t0 = 0, clock()
    while clock() - t0 < 0.05:
        run(x)
        n += 1
    per = (clock() - t0) / n
    calls = max(10, int(min_s / per))
    times = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(calls):
            run(x)
        times.append((clock() - t0) / calls)
    return statistics.median(times)


def chain(n: int) -> nn.Module:
    """n tiny layers: 2n operators (addmm, relu) doing almost no arithmetic."""
    layers: list[nn.Module] = []
    for _ in range(n):
        layers += [nn.Linear(4, 4), nn.ReLU()]
    return nn.Sequential(*layers).eval()


def overheads() -> None:
    """Per operator call and per forward call, in eager PyTorch, TorchScript and ONNX Runtime."""
    import onnxruntime as ort

    torch.set_num_threads(1)
    x = torch.zeros(1, 4)
    short, long = chain(1), chain(64)
    rows = []
    with torch.inference_mode():
        for name, prep in (("torch", lambda m: m), ("torchscript", lambda m: torch.jit.trace(m, x))):
            a, b = prep(short), prep(long)
            ta, tb = forward_time_s(a, x), forward_time_s(b, x)
            rows.append((name, (tb - ta) / 126, ta - 2 * (tb - ta) / 126))
    with tempfile.TemporaryDirectory() as d:
        sessions = []
        for m, tag in ((short, "short"), (long, "long")):
            path = Path(d) / f"{tag}.onnx"
            torch.onnx.export(m, (x,), str(path), input_names=["input"], output_names=["logits"], dynamo=False)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            sessions.append(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))
        feed = x.numpy()
        ta = forward_time_s(lambda _x: sessions[0].run(None, {"input": feed}), x)
        tb = forward_time_s(lambda _x: sessions[1].run(None, {"input": feed}), x)
        # ONNX Runtime fuses Gemm+Relu: the long chain runs 64 nodes, the short one 1
        rows.append(("onnxruntime", (tb - ta) / 63, ta - (tb - ta) / 63))
    print(f"{'runtime':<12} {'s per operator call':>20} {'s per forward call':>19}")
    for name, per_call, per_forward in rows:
        print(f"{name:<12} {per_call:>20.3g} {per_forward:>19.3g}")
    # attainable arithmetic rate of one thread: a 512x512 Linear at the cpu-host batch (32), eager
    # PyTorch, where dispatch (one call, a few us) is under 3% of the time
    gemm, xg = nn.Linear(512, 512).eval(), torch.rand(32, 512)
    with torch.inference_mode():
        t = forward_time_s(gemm, xg)
    print(f"one thread, Linear(512, 512) at batch 32: {32 * 512 * 512 / t:.3g} MAC/s ({t * 1e6:.1f} us per call)")
    # operators whose eager kernel costs several calls (call_weights): exact GELU against ReLU, 32x32
    xa = torch.rand(32, 32)
    with torch.inference_mode():
        t_gelu, t_relu = forward_time_s(torch.nn.functional.gelu, xa), forward_time_s(torch.relu, xa)
    print(f"eager, 32x32: gelu {t_gelu * 1e6:.2f} us, relu {t_relu * 1e6:.2f} us per call")


def check(
    space_name: str, input_shape: tuple[int, ...], networks: int, profile_name: str, seed: int, csv_out: Path | None
) -> int:
    """Estimate vs forward time x active power for `networks` sampled networks; 0 when all within 2x.

    `csv_out`: also write each network's reference energy per inference as a measurements CSV
    (architecture, energy_j, input_shape, num_classes, batch_size) that `nas profiles calibrate
    --from` reads."""
    torch.set_num_threads(1)
    profile = load_profile(profile_name)
    active_w = profile.peak_power_w.value - profile.idle_power_w.value
    space = load_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    batch = profile.batch_size
    x = torch.rand(batch, *input_shape)
    ratios, rows = [], []
    print(
        f"profile {profile.name} ({profile.runtime.name}), batch {batch}, active power {active_w:g} W, "
        f"space {space.name}, input {'x'.join(map(str, input_shape))}, torch threads 1"
    )
    print(f"{'#':>3} {'estimate J':>11} {'time x P J':>11} {'ratio':>6} {'fwd ms':>7}  architecture")
    for i in range(networks):
        trial = study.ask()
        arch = sample(trial, space)
        study.tell(trial, 0.0)
        torch.manual_seed(i)
        model = build_model(arch, input_shape, 10).eval()
        est = estimate_module(model, input_shape, profile).energy_per_inference_j
        with torch.inference_mode():
            t = forward_time_s(model, x)
        measured = t * active_w / batch
        ratios.append(est / measured)
        rows.append([arch.to_json(), f"{measured:.6g}", "x".join(map(str, input_shape)), 10, batch])
        print(
            f"{i:>3} {est:>11.3e} {measured:>11.3e} {est / measured:>6.2f} {t * 1e3:>7.3f}  {architecture_label(arch)}"
        )
    if csv_out is not None:
        with csv_out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["architecture", "energy_j", "input_shape", "num_classes", "batch_size"])
            w.writerows(rows)
    inside = sum(0.5 <= r <= 2.0 for r in ratios)
    print(
        f"ratio estimate / (time x active power): min {min(ratios):.2f}, median {statistics.median(ratios):.2f}, "
        f"max {max(ratios):.2f}; {inside}/{len(ratios)} within 2x"
    )
    return 0 if inside == len(ratios) else 1


def main() -> int:
    """Parse the arguments and run the check (or the overhead measurement)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="mlp")
    ap.add_argument("--input", default="1x8x8", help="input shape CxHxW (digits: 1x8x8)")
    ap.add_argument("--networks", type=int, default=30)
    ap.add_argument("--profile", default="cpu-host")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overheads", action="store_true")
    ap.add_argument("--csv", type=Path, help="also write the reference energies as a measurements CSV")
    a = ap.parse_args()
    if a.overheads:
        overheads()
        return 0
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return check(a.space, parse_input_shape(a.input), a.networks, a.profile, a.seed, a.csv)


if __name__ == "__main__":
    sys.exit(main())
