"""How fast this machine multiplies float32 matrices, in GFLOP/s: the ceiling for the kit's training loop.

    .venv/bin/python benchmarks/bench_matmul.py              # 1024 x 1024, 20 products
    .venv/bin/python benchmarks/bench_matmul.py --size 2048

Prints the median and the best of the timed products (a product of two n x n matrices is 2 n^3 FLOP), after
three untimed ones to warm up. Run it alone: on a shared machine the median is what others leave you.
"""
import argparse
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="rows = columns of each matrix (default 1024)")
    parser.add_argument("--repeats", type=int, default=20, help="timed products (default 20)")
    args = parser.parse_args()
    a, b = torch.randn(args.size, args.size), torch.randn(args.size, args.size)
    for _ in range(3):
        a @ b
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        a @ b
        seconds.append(time.perf_counter() - start)
    gflop = 2 * args.size**3 / 1e9
    print(f"float32 {args.size}x{args.size} matmul, {torch.get_num_threads()} threads, {args.repeats} products: "
          f"median {gflop / statistics.median(seconds):.0f} GFLOP/s, best {gflop / min(seconds):.0f} GFLOP/s")


if __name__ == "__main__":
    main()
