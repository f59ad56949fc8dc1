"""The measurement that chose the batch size, the learning rate and the number of steps.

Not part of the unit tests. Each setting is a batch size B and a learning rate; its number of
steps is what fits one budget of CPython wall time with 2 workers, at the time per step that
`--time` measures (CPython, 1 process and 2 workers, every B, interleaved). Training itself can run under PyPy,
which prints the same digits several times faster. For every setting and seed it prints the
held-out NELBO on all 1,000 held-out names, with the same names and masks for every setting of
one seed, so that settings are compared pairwise.

Run: python tests/training_sweep.py --time
     pypy3 tests/training_sweep.py --seeds 42,1,2 --budget 111.44 --ms-per-step 4:55.72,8:103.5 \
         --settings 4:0.007,8:0.01,8:0.012,8:0.014
(a time per step is --time's ms per name with 2 workers, times B)
"""
import argparse
import os
import statistics
import sys
import time
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contextlib
import io
import microdiffusion as md
import runs


def time_steps(path, batch_sizes, rounds=7, names_per_round=160):
    """ms per name of a training step on this Python, one process against 2 workers, for each
    batch size: interleaved, round by round, so that a machine whose speed drifts moves every
    variant alike. Each is a run of microdiffusion.py's main() (seed: the round), timed from
    the start of train() to its end, without the names the progress lines show. Prints the median over rounds."""
    variants = [(b, w) for b in batch_sizes for w in (1, 2)]
    times = {v: [] for v in variants}
    real_train = md.train
    def timed_train(*args):
        start = time.perf_counter()
        losses = real_train(*args)
        elapsed.append(time.perf_counter() - start)
        return losses
    no_names = lambda *args, **kwargs: ('', [])  # the progress lines' names: not training's time
    for r in range(rounds):
        for batch_size, n_workers in variants:
            elapsed = []
            with contextlib.redirect_stdout(io.StringIO()), mock.patch.object(md, 'train', timed_train), \
                    mock.patch.object(md, 'sample', no_names):
                md.main(['--input', path, '--seed', str(r), '--num-steps', str(names_per_round // batch_size),
                         '--batch-size', str(batch_size), '--workers', str(n_workers),
                         '--eval-names', '0', '--num-samples', '0'])
            times[batch_size, n_workers].append(elapsed[0] / names_per_round)
    print(f"# {sys.implementation.name} {sys.version.split()[0]}, {os.cpu_count()} cores; "
          f"median of {rounds} interleaved rounds of {names_per_round} names")
    print("| names a step | ms per name, 1 process | ms per name, 2 workers | ms per step, 2 workers |")
    print("|---|---|---|---|")
    for batch_size in batch_sizes:
        one, two = (statistics.median(times[batch_size, w]) * 1000 for w in (1, 2))
        print(f"| {batch_size} | {one:.2f} | {two:.2f} | {two * batch_size:.1f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='input.txt')
    parser.add_argument('--time', action='store_true', help='measure ms per step (CPython)')
    parser.add_argument('--batch-sizes', default='1,4,8,16', help='for --time')
    parser.add_argument('--seeds', default='42,1,2')
    parser.add_argument('--budget', type=float, help='seconds of CPython training, 2 workers')
    parser.add_argument('--ms-per-step', help='B:ms per step on CPython with 2 workers, from --time')
    parser.add_argument('--settings', default='4:0.007,4:0.01,8:0.01,8:0.014,8:0.02',
                        help='B:learning rate pairs')
    args = parser.parse_args()
    if args.time:
        time_steps(args.input, [int(b) for b in args.batch_sizes.split(',')])
        return
    ms_per_step = {int(b): float(ms) for b, ms in (pair.split(':') for pair in args.ms_per_step.split(','))}
    settings = [(int(b), float(lr)) for b, lr in (pair.split(':') for pair in args.settings.split(','))]
    print(f"# {sys.implementation.name} {sys.version.split()[0]}, budget {args.budget:g} s", flush=True)
    print("| seed | B | learning rate | steps | names seen | held-out NELBO |")
    print("|---|---|---|---|---|---|", flush=True)
    for seed in [int(s) for s in args.seeds.split(',')]:
        for batch_size, lr in settings:
            n_steps = round(args.budget * 1000 / ms_per_step[batch_size])
            nelbo = runs.heldout_nelbo(runs.train(args.input, seed, n_steps, batch_size, lr))
            print(f"| {seed} | {batch_size} | {lr:g} | {n_steps:,} | {n_steps * batch_size:,} | {nelbo:.4f} |",
                  flush=True)


if __name__ == '__main__':
    main()
