"""The measurement that chose the confidence sampler, on precision and recall at once.

Not part of the unit tests. For each training seed it trains the default model (and the
left-to-right twin, tests/left_to_right.py, on the same split), then draws 1,000 names with
every setting of the grid and judges them with tests/name_quality.py:
- how the confidence is taken: the drawn letter's log-probability (MaskGIT, Dream's default);
  the position's largest log-probability, before the draw (LLaDA's, at temperature 0); the
  log of the margin between its two largest probabilities; or its negative entropy (Dream);
- the temperature schedule, from its value at t = 1 to its value at t = 0 (equal: constant);
- the choice noise: choice_noise * t * Gumbel noise added to each confidence.
Two baselines: random order (the 'random' sampler) at temperature 1 and 0.5.

The rule: keep the settings whose recall and first-letter TV are, on every seed, no worse than
the left-to-right model's at temperature 0.5 (its mean over the seeds), with at least 95% of
the names distinct on every seed; among those, the best mean precision.

Run (the seeds can go to separate processes, then be summarised together):
  pypy3 tests/sampler_sweep.py --seeds 42 --json s42.json
  pypy3 tests/sampler_sweep.py --summarize s42.json s1.json s2.json
(further settings of the same seeds, run with --settings, are summarised beside them).
The README's rows only (every run includes the baselines): --measures '' --settings drawn:1-1:0,drawn:1-1:1
The drawn letter's grid and the neighbours of earlier defaults, as tests/README.md shows them:
  --measures drawn --settings drawn:1-0.8:1.5,drawn:1-0.8:1.25,drawn:1-0.8:2,drawn:1-0.9:1.25,drawn:1-0.9:1.5,drawn:1-1:0.75,drawn:1-1:1.25
"""
import argparse
import contextlib
import json
import math
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import microdiffusion as md
import name_quality as nq
import left_to_right as l2r
import loss_weighting
import runs


def margin(probs, token):
    first, second = sorted(probs)[-2:][::-1]
    return math.log(first - second + 1e-12)


MEASURES = {
    'drawn': lambda probs, token: math.log(probs[token]),
    'top': lambda probs, token: math.log(max(probs)),
    'margin': margin,
    'entropy': lambda probs, token: sum(p * math.log(p) for p in probs if p > 0),
    'none': lambda probs, token: 0.0,  # with noise: random order
}
TEMPERATURES = [(1.1, 0.3), (1.0, 0.5), (1.0, 0.8), (1.0, 1.0), (0.7, 0.7), (0.5, 0.5)]
NOISES = [0.0, 0.5, 1.0]
FIGURES = ('precision', 'recall', 'first_tv', 'length_tv', 'distinct', 'in_train', 'in_heldout')


def settings(measures=('drawn', 'top', 'margin', 'entropy'), temperatures=TEMPERATURES, noises=NOISES, listed=()):
    """The baselines, then every measure x temperature schedule x noise of the grid, then the
    listed (measure, start, end, noise) settings that the grid does not hold."""
    yield ('random', 'none', 1.0, 1.0, 0.0)
    yield ('random order, T 0.5', 'none', 0.5, 0.5, 1.0)
    grid = [(m, start, end, noise) for m in measures for start, end in temperatures for noise in noises]
    grid += [setting for setting in listed if setting not in grid]
    for measure, start, end, noise in grid:
        yield (f"{measure}, T {start:g} -> {end:g}, noise {noise:g}", measure, start, end, noise)


def measure_seed(path, seed, n_samples, num_steps, grid, exact_weighting=False):
    rows = {}
    start = time.time()
    with loss_weighting.exact_weighting() if exact_weighting else contextlib.nullcontext():
        run = runs.train(path, seed, num_steps)
    tok, weights, length_probs, heldout_names = run.tok, run.weights, run.length_probs, run.heldout_names
    nelbo = runs.heldout_nelbo(run)
    judge = nq.Judge(run.train_names, heldout_names)
    rows['real names'] = judge.real_names(random.Random(seed))
    _, ltok, bos, lweights, _, _ = l2r.build(path, seed)
    nll = l2r.heldout_nll(heldout_names, ltok, bos, lweights)
    for temperature in (0.5, 1.0):
        sample_rng = random.Random(seed)
        rows[f'left to right, T {temperature:g}'] = judge.judge(
            [l2r.sample(ltok, bos, lweights, sample_rng, temperature) for _ in range(n_samples)])
    print(f"<!-- seed {seed}: held-out NELBO {nelbo:.4f}, left-to-right NLL {nll:.4f}, "
          f"{time.time() - start:.0f}s -->", flush=True)
    default = md.temperature_start, md.temperature_end, md.choice_noise, md.confidence
    for label, measure, t_start, t_end, noise in settings(*grid):
        sampler = 'random' if label == 'random' else 'confidence'
        md.temperature_start, md.temperature_end = t_start, t_end
        md.confidence, md.choice_noise = MEASURES[measure], noise
        sample_rng = random.Random(seed)  # the same draws for every setting of one model
        samples = [md.sample(tok, weights, length_probs, sample_rng, sampler=sampler)[0] for _ in range(n_samples)]
        rows[label] = judge.judge(samples)
        print(nq.row_text(f"{seed} {label}", rows[label]), flush=True)
    md.temperature_start, md.temperature_end, md.choice_noise, md.confidence = default
    return {'seed': seed, 'nelbo': nelbo, 'l2r_nll': nll, 'rows': rows}


def summarize(results):
    seeds = [r['seed'] for r in results]
    reference = {figure: sum(r['rows']['left to right, T 0.5'][figure] for r in results) / len(results)
                 for figure in ('recall', 'first_tv')}
    nelbos = ', '.join(f"{r['nelbo']:.3f}" for r in results)
    nlls = ', '.join(f"{r['l2r_nll']:.3f}" for r in results)
    print(f"held-out NELBO by seed {seeds}: {nelbos}; left-to-right NLL: {nlls}")
    print(f"the bar (left to right at T 0.5, mean over seeds): recall {reference['recall']:.3f}, "
          f"first-letter TV {reference['first_tv']:.3f}\n")
    print("| setting | precision | recall | first-letter TV | length TV | distinct | real names | passes the bar |")
    print("|---|---|---|---|---|---|---|---|")
    chosen = None
    for label in results[0]['rows']:
        rows = [r['rows'][label] for r in results]
        mean = {figure: sum(row[figure] for row in rows) / len(rows) for figure in FIGURES}
        spread = {figure: (min(row[figure] for row in rows), max(row[figure] for row in rows)) for figure in FIGURES}
        passes = all(row['recall'] <= reference['recall'] and row['first_tv'] <= reference['first_tv']
                     and row['distinct'] >= 0.95 for row in rows)
        candidate = passes and not label.startswith(('real', 'left', 'random'))
        if candidate and (chosen is None or mean['precision'] < chosen[1]):
            chosen = (label, mean['precision'])
        print(f"| {label} | {mean['precision']:.3f} | {mean['recall']:.3f} ({spread['recall'][0]:.3f}-{spread['recall'][1]:.3f}) "
              f"| {mean['first_tv']:.3f} ({spread['first_tv'][0]:.3f}-{spread['first_tv'][1]:.3f}) | {mean['length_tv']:.3f} "
              f"| {mean['distinct']:.1%} (lowest {spread['distinct'][0]:.1%}) | {mean['in_train'] + mean['in_heldout']:.1%} "
              f"| {'yes' if passes else 'no'} |")
    print(f"\nchosen: {chosen[0] if chosen else 'nothing passes the bar'}"
          + (f" (mean precision {chosen[1]:.3f})" if chosen else ''))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='input.txt')
    parser.add_argument('--seeds', default='42,1,2')
    parser.add_argument('--samples', type=int, default=1000)
    parser.add_argument('--num-steps', type=int, default=md.num_steps, help='training steps (default: the default run\'s)')
    parser.add_argument('--measures', default='drawn,top,margin,entropy')
    parser.add_argument('--temperatures', default=','.join(f'{a:g}-{b:g}' for a, b in TEMPERATURES),
                        help='start-end pairs: the temperature at t = 1 and at t = 0')
    parser.add_argument('--noises', default=','.join(f'{x:g}' for x in NOISES))
    parser.add_argument('--settings', help='beside the grid (--measures \'\' for none), these: measure:start-end:noise, comma-separated '
                                           '(e.g. drawn:1-0.8:1.25,top:0.7-0.7:0)')
    parser.add_argument('--exact-weighting', action='store_true',
                        help="train with tests/loss_weighting.py's exactly weighted loss instead")
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--summarize', nargs='+', metavar='JSON', help='only summarise results written before')
    args = parser.parse_args()
    grid = ([m for m in args.measures.split(',') if m], [tuple(float(x) for x in pair.split('-')) for pair in args.temperatures.split(',')],
            [float(x) for x in args.noises.split(',')])
    if args.settings:
        listed = []
        for item in args.settings.split(','):
            measure, temperatures, noise = item.split(':')
            start, end = (float(x) for x in temperatures.split('-'))
            listed.append((measure, start, end, float(noise)))
        grid += (listed,)
    if args.summarize:
        by_seed = {}  # runs of one seed (the grid, then more settings) are merged
        for path in args.summarize:
            with open(path) as f:
                for result in json.load(f):
                    by_seed.setdefault(result['seed'], result)['rows'].update(result['rows'])
        summarize(list(by_seed.values()))
        return
    print(f"# {sys.implementation.name} {sys.version.split()[0]}; {args.num_steps} steps of {md.batch_size} names, "
          f"learning rate {md.learning_rate:g}; {args.samples} names per setting", flush=True)
    print(nq.HEADER)
    results = [measure_seed(args.input, int(seed), args.samples, args.num_steps, grid, args.exact_weighting)
               for seed in args.seeds.split(',')]
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f)
    summarize(results)


if __name__ == '__main__':
    main()
