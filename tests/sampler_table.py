"""Held-out NELBO and sample statistics for every sampler after 2000, 5000, the default and 10000 steps.

Not part of the unit tests: it trains three models and draws thousands of names, which takes
about 2 minutes under PyPy (pypy3 tests/sampler_table.py --input ../shared/names.txt) and
several times that under CPython. Prints a Markdown table for the README.
"""
import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import microdiffusion as md

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument('--input', default='input.txt')
parser.add_argument('--steps', default=f"2000,5000,{md.make_parser().get_default('num_steps')},10000",
                    help='comma-separated training lengths (default: 2000, 5000, the default run\'s, 10000)')
parser.add_argument('--samples', type=int, default=1000, help='samples per sampler')
parser.add_argument('--eval-names', type=int, default=1000, help='held-out names for the NELBO')
parser.add_argument('--seed', type=int, default=42)
args = parser.parse_args()

print(f"# {sys.implementation.name} {sys.version.split()[0]}, seed {args.seed}, "
      f"{args.samples} samples per sampler, NELBO on {args.eval_names} held-out names", flush=True)
print("| steps | held-out NELBO (nats/char) | sampler | distinct | real names | training names | held-out names | new | length TV | empty |")
print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
for num_steps in [int(n) for n in args.steps.split(',')]:
    start = time.time()
    rng, tok, train_names, heldout_names, length_probs, state_dict, _ = md.prepare(args.input, args.seed)
    losses = md.train(train_names, tok, state_dict, num_steps, rng)
    weights = md.as_floats(state_dict)
    eval_names = heldout_names[:args.eval_names]
    per_char, stderr = md.heldout_nelbo(eval_names, tok, weights, length_probs, random.Random(args.seed + 1))
    baseline = md.context_free_nll(train_names, eval_names, tok, length_probs)
    for sampler in md.SAMPLERS:
        sample_rng = random.Random(args.seed)  # the same draws for every sampler and model
        samples = [md.sample(tok, weights, length_probs, sample_rng, 64, sampler)[0] for _ in range(args.samples)]
        st = md.sample_stats(samples, train_names, heldout_names)
        print(f"| {num_steps} | {per_char:.3f} ± {stderr:.3f} | {sampler} | {st['distinct']:.1%} "
              f"| {st['in_train'] + st['in_heldout']:.1%} | {st['in_train']:.1%} "
              f"| {st['in_heldout']:.1%} | {st['new']:.1%} | {st['length_tv']:.3f} | {st['empty']:.1%} |", flush=True)
        print(f"<!-- {num_steps} {sampler}: {' '.join(samples[:12])} -->", flush=True)
    print(f"<!-- {num_steps} steps: context-free baseline {baseline:.3f} nats/char, "
          f"mean loss of the last 100 steps {sum(losses[-100:]) / 100:.4f}, "
          f"{time.time() - start:.0f}s -->", flush=True)
