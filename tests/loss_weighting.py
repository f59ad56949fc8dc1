"""The training loss against the bound's exact weighting, at the default budget.

Not part of the unit tests. The file's training loss is the mean cross-entropy over a name's
hidden letters, with t log-uniform in [t_min, 1]. In expectation that is sum_k P(k) c_k: the
terms of the NELBO (c_k, the mean cross-entropy with k of the L letters hidden), each weighted
by P(k), how often k letters are hidden, where the bound weights every c_k by 1. MDLM's
weighting (the sum over hidden letters, times 1/t) integrated over t in [t_min, 1] is the same
bound without its lightly masked end; with t drawn log-uniform, whose density is
1 / (t ln(1 / t_min)), the sum over the hidden letters times ln(1 / t_min) = ln 5 is an
unbiased estimate of it. For each seed this trains the default model with each loss (the
same names, noise and steps) and prints both held-out NELBOs, on all 1,000 held-out names.

Run: pypy3 tests/loss_weighting.py --seeds 42,1,2 [--learning-rates 0.01,0.014,0.02]
(the names, judged: pypy3 tests/sampler_sweep.py --exact-weighting ...)
"""
import argparse
import contextlib
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import microdiffusion as md
import runs


def exact_loss(logits, clean, masked):
    """The sum of the cross-entropies at the hidden letters, times ln(1 / t_min)."""
    return md.total([md.cross_entropy(logits[pos], clean[pos]) for pos in masked]) * math.log(1 / md.t_min)


@contextlib.contextmanager
def exact_weighting():
    """Train with exact_loss; the NELBO is measured with the file's own functions after."""
    real_loss, md.masked_loss = md.masked_loss, exact_loss
    try:
        yield
    finally:
        md.masked_loss = real_loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='input.txt')
    parser.add_argument('--seeds', default='42,1,2')
    parser.add_argument('--learning-rates', default=f'{md.learning_rate}',
                        help='for the exact weighting, comma-separated (Adam is nearly blind to scale)')
    args = parser.parse_args()
    print(f"# {sys.implementation.name} {sys.version.split()[0]}; {md.num_steps} steps of {md.batch_size}")
    print("| seed | loss | learning rate | held-out NELBO |\n|---|---|---|---|", flush=True)
    results = {}
    for seed in [int(s) for s in args.seeds.split(',')]:
        start = time.time()
        nelbo = runs.heldout_nelbo(runs.train(args.input, seed))
        results.setdefault(('mean over hidden letters', md.learning_rate), []).append(nelbo)
        print(f"| {seed} | mean over hidden letters (the file's) | {md.learning_rate:g} | {nelbo:.4f} |", flush=True)
        for lr in [float(x) for x in args.learning_rates.split(',')]:
            with exact_weighting():
                run = runs.train(args.input, seed, learning_rate=lr)
            nelbo = runs.heldout_nelbo(run)
            results.setdefault(('sum over hidden letters x ln 5', lr), []).append(nelbo)
            print(f"| {seed} | sum over hidden letters x ln 5 | {lr:g} | {nelbo:.4f} |", flush=True)
        print(f"<!-- seed {seed}: {time.time() - start:.0f}s -->", flush=True)
    print("\n| loss | learning rate | mean held-out NELBO | by seed |\n|---|---|---|---|")
    for (loss, lr), nelbos in results.items():
        print(f"| {loss} | {lr:g} | {sum(nelbos) / len(nelbos):.4f} | {', '.join(f'{x:.4f}' for x in nelbos)} |")


if __name__ == '__main__':
    main()
