"""The measurement that chose the confidence sampler's temperatures and choice noise.

Not part of the unit tests. For each training seed it trains the default model, then draws
1,000 names (by default) with every setting of the grid: the temperature falls with t from
a start value to an end value, and choice_noise * t * Gumbel noise is added to each
log-confidence. Prints a row per seed and setting, then the mean over the seeds of each
setting, as a Markdown table for the README. A setting is kept if it makes at least 90% of
its names distinct; among those, the one with the most real names (training plus held out)
is the choice.

Run: pypy3 tests/sampler_sweep.py --input ../shared/names.txt --seeds 42,1,2    (about 7 minutes
under PyPy; CPython prints the same numbers, several times slower)
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
parser.add_argument('--num-steps', type=int, default=md.make_parser().get_default('num_steps'))
parser.add_argument('--seeds', default='42,1,2', help='comma-separated training seeds')
parser.add_argument('--samples', type=int, default=1000, help='names per setting')
parser.add_argument('--temperatures', default='0.7-0.3,0.8-0.3,0.9-0.3,1.0-0.3,1.1-0.3,0.8-0.4,1.0-0.5,1.2-0.5,0.9-0.6,0.6-0.2,1.0-1.0',
                    help='comma-separated start-end pairs: the temperature at t = 1 and at t = 0')
parser.add_argument('--noises', default='0,0.25,0.5,0.75,1,2', help='comma-separated choice_noise values')
args = parser.parse_args()

temperatures = [tuple(float(x) for x in pair.split('-')) for pair in args.temperatures.split(',')]
noises = [float(x) for x in args.noises.split(',')]
seeds = [int(x) for x in args.seeds.split(',')]

print(f"# {sys.implementation.name} {sys.version.split()[0]}, {args.num_steps} training steps, "
      f"{args.samples} names per setting", flush=True)
print("| seed | temperature | choice noise | distinct | real names | held-out names | length TV | empty |")
print("|---|---|---|---|---|---|---|---|", flush=True)
results = {}
for seed in seeds:
    start = time.time()
    rng, tok, train_names, heldout_names, length_probs, state_dict, _ = md.prepare(args.input, seed)
    md.train(train_names, tok, state_dict, args.num_steps, rng)
    weights = md.as_floats(state_dict)
    for t_start, t_end in temperatures:
        for noise in noises:
            md.temperature_at_start, md.temperature_at_end, md.choice_noise = t_start, t_end, noise
            sample_rng = random.Random(seed)  # the same draws for every setting of one model
            samples = [md.sample(tok, weights, length_probs, sample_rng)[0] for _ in range(args.samples)]
            st = md.sample_stats(samples, train_names, heldout_names)
            row = (st['distinct'], st['in_train'] + st['in_heldout'], st['in_heldout'], st['length_tv'], st['empty'])
            results.setdefault((t_start, t_end, noise), []).append(row)
            print(f"| {seed} | {t_end:g} + {t_start - t_end:g} t | {noise:g} | {row[0]:.1%} | {row[1]:.1%} "
                  f"| {row[2]:.1%} | {row[3]:.3f} | {row[4]:.1%} |", flush=True)
    print(f"<!-- seed {seed}: {time.time() - start:.0f}s -->", flush=True)

print(f"\nMean over seeds {args.seeds}:\n")
print("| temperature | choice noise | distinct | real names | held-out names | length TV | lowest distinct |")
print("|---|---|---|---|---|---|---|")
for (t_start, t_end, noise), rows in results.items():
    mean = [sum(column) / len(rows) for column in zip(*rows)]
    print(f"| {t_end:g} + {t_start - t_end:g} t | {noise:g} | {mean[0]:.1%} | {mean[1]:.1%} | {mean[2]:.1%} "
          f"| {mean[3]:.3f} | {min(row[0] for row in rows):.1%} |")
