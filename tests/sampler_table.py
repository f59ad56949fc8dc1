"""How good the model gets with the names it sees: held-out NELBO and the judge's figures for
several trainings, beside the left-to-right twin.

Not part of the unit tests. Each training is B:learning rate:steps. For each seed it trains
each one (and the left-to-right twin on the same split), prints the held-out NELBO on all
1,000 held-out names and judges 1,000 names from each sampler (tests/name_quality.py). The
gap is how much worse than real names the precision and the recall are, added up: 0 is as
good as real names on both axes. At the default training it also judges the default sampler
without its choice noise (surest first), the README's precision-recall row.

Run: pypy3 tests/sampler_table.py --seeds 42 --json t42.json
     pypy3 tests/sampler_table.py --summarize t42.json t1.json t2.json
The figures' data, the means over the seeds (tests/figures/plot.py draws them):
     pypy3 tests/sampler_table.py --summarize t42.json t1.json t2.json --figure-data tests/figures/names_seen.json
"""
import argparse
import json
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
import runs

SAMPLERS = ('confidence', 'random')
NO_NOISE = 'confidence without noise'  # choice noise 0, at the default training only


def gap(row, real):
    return row['precision'] - real['precision'] + row['recall'] - real['recall']


def measure_seed(path, seed, trainings, n_samples):
    result = {'seed': seed, 'rows': {}}
    data = runs.split(path, seed)
    heldout_names = data.heldout_names
    judge = nq.Judge(data.train_names, heldout_names)
    real = judge.real_names(random.Random(seed))
    result['rows']['real names'] = {'row': real}
    _, ltok, bos, lweights, _, _ = l2r.build(path, seed)
    nll = l2r.heldout_nll(heldout_names, ltok, bos, lweights)
    for temperature in (0.5, 1.0):
        sample_rng = random.Random(seed)
        row = judge.judge([l2r.sample(ltok, bos, lweights, sample_rng, temperature) for _ in range(n_samples)])
        result['rows'][f'left to right, 1,000 steps of 1, T {temperature:g}'] = {'nelbo': nll, 'row': row, 'names': 1000}
    for batch_size, lr, n_steps in trainings:
        start = time.time()
        run = runs.train(path, seed, n_steps, batch_size, lr)
        tok, weights, length_probs = run.tok, run.weights, run.length_probs
        nelbo = runs.heldout_nelbo(run)
        default = (batch_size, lr, n_steps) == (md.batch_size, md.learning_rate, md.num_steps)
        noise = md.choice_noise
        for sampler in SAMPLERS + ((NO_NOISE,) if default else ()):
            sample_rng = random.Random(seed)  # the same draws for every sampler, not main()'s rng
            md.choice_noise = 0.0 if sampler == NO_NOISE else noise
            kind = 'confidence' if sampler == NO_NOISE else sampler
            samples = [md.sample(tok, weights, length_probs, sample_rng, sampler=kind)[0] for _ in range(n_samples)]
            md.choice_noise = noise
            label = f"{n_steps:,} steps of {batch_size}, lr {lr:g}, {sampler}"
            result['rows'][label] = {'nelbo': nelbo, 'row': judge.judge(samples), 'names': n_steps * batch_size,
                                     'first': samples[:12]}
        print(f"<!-- seed {seed}, {n_steps} steps of {batch_size}: NELBO {nelbo:.4f}, {time.time() - start:.0f}s -->", flush=True)
    return result


def summarize(results):
    print("| training | names seen | held-out NELBO | sampler | precision | recall | first-letter TV | distinct | gap |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label in results[0]['rows']:
        entries = [r['rows'][label] for r in results]
        mean = lambda f: sum(f(e) for e in entries) / len(entries)
        real = [r['rows']['real names']['row'] for r in results]
        gaps = [gap(e['row'], rr) for e, rr in zip(entries, real)]
        training, _, sampler = label.rpartition(', ')
        nelbo = f"{mean(lambda e: e['nelbo']):.3f}" if 'nelbo' in entries[0] else ''
        names = f"{entries[0]['names']:,}" if 'names' in entries[0] else ''
        print(f"| {training or label} | {names} | {nelbo} | {sampler if training else ''} "
              f"| {mean(lambda e: e['row']['precision']):.3f} | {mean(lambda e: e['row']['recall']):.3f} "
              f"| {mean(lambda e: e['row']['first_tv']):.3f} | {mean(lambda e: e['row']['distinct']):.1%} "
              f"| {sum(gaps) / len(gaps):.2f} ({min(gaps):.2f}-{max(gaps):.2f}) |")
    for r in results:
        for label, entry in r['rows'].items():
            if 'first' in entry:
                print(f"<!-- seed {r['seed']}, {label}: {' '.join(entry['first'])} -->")


def figure_data(results, path):
    """Each row's means over the seeds, for tests/figures/plot.py."""
    rows = []
    for label in results[0]['rows']:
        entries = [r['rows'][label] for r in results]
        mean = lambda f: sum(f(e) for e in entries) / len(entries)
        training, _, sampler = label.rpartition(', ')
        rows.append({'training': training or label, 'sampler': sampler if training else None,
                     'names': entries[0].get('names'),
                     'nelbo': mean(lambda e: e['nelbo']) if 'nelbo' in entries[0] else None,
                     **{f: mean(lambda e: e['row'][f]) for f in ('precision', 'recall', 'first_tv', 'distinct')}})
    with open(path, 'w') as f:
        json.dump({'seeds': [r['seed'] for r in results], 'default_names': md.num_steps * md.batch_size,
                   'rows': rows}, f, indent=1)
        f.write('\n')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='input.txt')
    parser.add_argument('--seeds', default='42,1,2')
    parser.add_argument('--trainings', default=','.join(f"{md.batch_size}:{md.learning_rate}:{md.num_steps * k // 4}"
                                                        for k in (1, 4, 8, 16)),
                        help='B:learning rate:steps, comma-separated (default: the default training at '
                             '1/4, 1, 2 and 4 times its steps)')
    parser.add_argument('--samples', type=int, default=1000)
    parser.add_argument('--json', help='also write the results to this file')
    parser.add_argument('--summarize', nargs='+', metavar='JSON', help='only summarise results written before')
    parser.add_argument('--figure-data', metavar='PATH', help="also write the means over the seeds to this file, "
                                                              "for tests/figures/plot.py")
    args = parser.parse_args()
    if args.summarize:
        results = []
        for path in args.summarize:
            with open(path) as f:
                results.extend(json.load(f))
        summarize(results)
        if args.figure_data:
            figure_data(results, args.figure_data)
        return
    trainings = [(int(b), float(lr), int(n)) for b, lr, n in (t.split(':') for t in args.trainings.split(','))]
    print(f"# {sys.implementation.name} {sys.version.split()[0]}, {args.samples} names per sampler", flush=True)
    results = [measure_seed(args.input, int(seed), trainings, args.samples) for seed in args.seeds.split(',')]
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f)
    summarize(results)
    if args.figure_data:
        figure_data(results, args.figure_data)


if __name__ == '__main__':
    main()
