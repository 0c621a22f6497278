"""Benchmark of the conv variants against plain convs, measured side by side in one run (not a test).

For ResNet-18 at 224x224 (batch 32, the papers' per-GPU ImageNet batch: the goal row; and batch 8, the
small-batch row, where the per-step kernel construction weighs most) and ResNet-20 at 32x32 (batch 128, a
goal row) it prints, per method:
  train  = train-step time (forward + cross-entropy + backward + SGD step [+ ACONV sigma clamp]) / stdconv
  infer  = eval forward time after ``reparameterize_model`` / plain stdconv eval forward
  memory = peak RSS growth during one train step (fresh subprocess per method) / stdconv's
  kernel = forward + backward of every foldable layer's kernel construction alone (what training pays on
           top of plain convs; a folded model does not), as a share of the stdconv train step
Goals, on the goal rows: train <= 1.05x for s-gmconv and aconv, <= 1.10x for coc and gmconv; infer 1.00x.
The kernel construction costs the same per step at any batch while the convs scale with it, so the
small-batch row shows the ratios' upper end; it is printed without a verdict.
A "control" row times a second identical plain model the same way: its distance from 1.00x shows how much
of a ratio is noise from other processes on the machine.
Methods are interleaved inside every round so load changes on a shared machine hit all of them alike; a
ratio is the median over rounds of (method time / stdconv time in the same round).

    .venv/bin/python tests/bench/bench_layers.py [--iters 7] [--threads 1] [--only resnet18-b32] [--methods coc]

``--methods`` restricts the timed variants (stdconv and the control are always timed, being the baseline
and the noise floor).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time

import torch
import torch.nn.functional as F

from layers import METHODS, ReparamConv2d, build_model, clamp_adaptive_sigmas, reparameterize_model

# row -> (model, input size, batch, classes, goal row?)
CONFIGS = {
    "resnet18-b32": ("resnet18", 224, 32, 1000, True),
    "resnet18-b8": ("resnet18", 224, 8, 1000, False),
    "resnet20": ("resnet20", 32, 128, 10, True),
}
GOALS = {"stdconv": 1.0, "s-gmconv": 1.05, "aconv": 1.05, "coc": 1.10, "gmconv": 1.10}
CONTROL = "control"  # a second, identical plain model timed like the others: its ratio is the noise floor


def _build(name: str, method: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model, _, _, classes, _ = CONFIGS[name]
    return build_model(model, classes, "stdconv" if method == CONTROL else method)


def _train_step(model, opt, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    clamp_adaptive_sigmas(model)


def _kernel_build(layers: list[ReparamConv2d], upstream: list[torch.Tensor]) -> None:
    kernels = [layer.get_equivalent_kernel_bias()[0] for layer in layers]
    torch.autograd.backward(kernels, upstream)
    for layer in layers:
        layer.zero_grad(set_to_none=True)


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def _peak_memory(name: str, method: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    _, size, batch, classes, _ = CONFIGS[name]
    model = _build(name, method)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,))
    before = _rss_kib()
    _train_step(model, opt, x, y)
    queue.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)


def measure_memory(name: str, threads: int, methods: tuple[str, ...] = METHODS) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    out = {}
    for method in methods:
        queue = ctx.Queue()
        proc = ctx.Process(target=_peak_memory, args=(name, method, threads, queue))
        proc.start()
        out[method] = queue.get()
        proc.join()
    return out


def measure_times(name: str, iters: int, methods: tuple[str, ...] = METHODS
                  ) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    _, size, batch, classes, _ = CONFIGS[name]
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,))
    timed = methods + (CONTROL,)
    models = {m: _build(name, m) for m in timed}
    opts = {m: torch.optim.SGD(models[m].parameters(), lr=0.01, momentum=0.9) for m in timed}
    train = {m: [] for m in timed}
    foldable = {m: [k for k in models[m].modules() if isinstance(k, ReparamConv2d) and k.foldable] for m in timed}
    upstream = {m: [torch.randn_like(k.weight) for k in foldable[m]] for m in timed}
    kernel = {m: [] for m in timed if foldable[m]}
    for it in range(iters + 1):  # the first round warms up
        for m in timed:
            start = time.perf_counter()
            _train_step(models[m], opts[m], x, y)
            if it:
                train[m].append(time.perf_counter() - start)
            if m in kernel:
                start = time.perf_counter()
                _kernel_build(foldable[m], upstream[m])
                if it:
                    kernel[m].append(time.perf_counter() - start)
    infer_models = {m: reparameterize_model(models[m]).eval() for m in timed}
    infer_models["stdconv"] = models["stdconv"].eval()
    infer = {m: [] for m in timed}
    with torch.no_grad():
        for it in range(iters + 1):
            for m in timed:
                start = time.perf_counter()
                infer_models[m](x)
                if it:
                    infer[m].append(time.perf_counter() - start)
    shares = {m: statistics.median(t / b for t, b in zip(v, train["stdconv"])) for m, v in kernel.items()}
    return _ratios(train), _ratios(infer), shares


def _ratios(times: dict[str, list[float]]) -> dict[str, float]:
    """Per-round ratios to stdconv, median over rounds; "stdconv" itself maps to its median seconds."""
    out = {m: statistics.median(t / b for t, b in zip(v, times["stdconv"])) for m, v in times.items()}
    out["stdconv"] = statistics.median(times["stdconv"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=list(CONFIGS), default=None)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="variants to time (stdconv, the baseline, is always included)")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args(argv)
    methods = tuple(m for m in METHODS if m == "stdconv" or m in args.methods)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, rounds {args.iters} (+1 warm-up), CPU")
    for name in [args.only] if args.only else list(CONFIGS):
        model, size, batch, _, goal_row = CONFIGS[name]
        train, infer, kernel = measure_times(name, args.iters, methods)
        memory = None if args.no_memory else measure_memory(name, args.threads, methods)
        row = "goal" if goal_row else "small-batch"
        print(f"\n{model} {size}x{size} batch {batch} ({row} row): stdconv train step {train['stdconv'] * 1e3:.0f} ms, "
              f"inference {infer['stdconv'] * 1e3:.0f} ms"
              + ("" if memory is None else f", train-step peak RSS growth {memory['stdconv'] / 1024:.0f} MiB"))
        print(f"{'method':<10}{'train':>9}{'goal':>7}{'infer(folded)':>15}{'memory':>9}{'kernel':>9}")
        for m in methods:
            mem = "" if memory is None else f"{memory[m] / max(memory['stdconv'], 1):.2f}x"
            ratio, inf = (1.0, 1.0) if m == "stdconv" else (train[m], infer[m])
            verdict = ("ok" if round(ratio, 2) <= GOALS[m] else "MISSED") if goal_row else ""
            share = f"+{kernel[m]:.0%}" if m in kernel else ""
            print(f"{m:<10}{ratio:>8.2f}x{GOALS[m]:>6.2f}x{inf:>14.2f}x{mem:>9}{share:>9}  {verdict}")
        print(f"{CONTROL:<10}{train[CONTROL]:>8.2f}x{'':>7}{infer[CONTROL]:>14.2f}x{'':>9}  "
              "(identical plain model: the noise floor of this run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
