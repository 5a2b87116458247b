"""How fast this machine multiplies float32 matrices, in GFLOP/s: the ceiling for the kit's training loop.

    .venv/bin/python benchmarks/bench_matmul.py              # 1024 x 1024, 20 products
    .venv/bin/python benchmarks/bench_matmul.py --size 2048
    .venv/bin/python benchmarks/bench_matmul.py --smoke      # 256 x 256, 5 products (tests)

Prints the median and the best of the timed products (a product of two n x n matrices is 2 n^3 FLOP), after
three untimed ones to warm up, and writes them to benchmarks/results/bench_matmul.json. Run it alone: on a
shared machine the median is what others leave you. `bench_speed.py` calls `throughput` in its own process to
put a floor under the default run.
"""
import statistics
import time

import torch

import _results


def throughput(size: int = 1024, repeats: int = 20) -> dict:
    """float32 n x n matrix products in this process: median and best GFLOP/s over `repeats` timed products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    gflop = 2 * size**3 / 1e9
    return {"size": size, "repeats": repeats, "threads": torch.get_num_threads(),
            "gflops_median": gflop / statistics.median(seconds), "gflops_best": gflop / min(seconds),
            "seconds": seconds}


def main() -> None:
    parser = _results.parser(__doc__)
    parser.add_argument("--size", type=int, default=1024, help="rows = columns of each matrix (default 1024)")
    parser.add_argument("--repeats", type=int, default=20, help="timed products (default 20)")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.repeats = 256, 5
    before = _results.load_average()
    found = throughput(args.size, args.repeats)
    print(f"float32 {args.size}x{args.size} matmul, {found['threads']} threads, {args.repeats} products: "
          f"median {found['gflops_median']:.0f} GFLOP/s, best {found['gflops_best']:.0f} GFLOP/s")
    _results.write("bench_matmul", args, {"gflops_median": found["gflops_median"], "gflops_best": found["gflops_best"]},
                   {"median_over_best": found["gflops_median"] / found["gflops_best"]}, before,
                   settings={"size": args.size, "repeats": args.repeats, "threads": found["threads"]},
                   rounds={"seconds": found["seconds"]})


if __name__ == "__main__":
    main()
