"""How many denoising steps a name needs: model passes, time, precision and recall.

Not part of the unit tests. For each seed it trains the default model (or loads one saved
with --save), then draws 1,000 names with the default sampler at each number of denoising
steps, counts the model passes per name (a pass commits every letter the schedule releases
at that step: several at once when the steps are few), times a name, and judges the names
with tests/name_quality.py.

Run: pypy3 tests/denoise_steps.py --seeds 42,1,2
     python tests/denoise_steps.py --load model.json --samples 200   (CPython times)
"""
import argparse
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import microdiffusion as md
import name_quality as nq
import runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='input.txt')
    parser.add_argument('--seeds', default='42,1,2')
    parser.add_argument('--steps', default='4,8,16,64', help='numbers of denoising steps')
    parser.add_argument('--samples', type=int, default=1000)
    parser.add_argument('--load', help='a model saved with --save (pass its seed as --seeds) instead of training')
    args = parser.parse_args()
    print(f"# {sys.implementation.name} {sys.version.split()[0]}, {args.samples} names per setting")
    print("| seed | denoising steps | model passes per name | letters per pass | ms per name "
          "| precision | recall | first-letter TV | distinct |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    seeds = [int(s) for s in args.seeds.split(',')]
    by_steps = {}
    for seed in seeds[:1] if args.load else seeds:
        run = runs.load(args.input, seed, args.load) if args.load else runs.train(args.input, seed)
        tok, weights, length_probs = run.tok, run.weights, run.length_probs
        judge = nq.Judge(run.train_names, run.heldout_names)
        passes = []
        real_predictor = md.mask_predictor
        def counting_predictor(canvas, tok, w, positions=None):
            passes.append(1)
            return real_predictor(canvas, tok, w, positions)
        md.mask_predictor = counting_predictor
        try:
            for n_steps in [int(n) for n in args.steps.split(',')]:
                passes.clear()
                sample_rng = random.Random(seed)
                start = time.time()
                samples = [md.sample(tok, weights, length_probs, sample_rng, n_steps)[0] for _ in range(args.samples)]
                per_name = (time.time() - start) / args.samples
                r = judge.judge(samples)
                letters = sum(len(name) for name in samples)
                by_steps.setdefault(n_steps, []).append((len(passes) / args.samples, letters / len(passes),
                                                         per_name * 1000, r))
                print(f"| {seed} | {n_steps} | {len(passes) / args.samples:.2f} | {letters / len(passes):.2f} "
                      f"| {per_name * 1000:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['first_tv']:.3f} "
                      f"| {r['distinct']:.1%} |", flush=True)
        finally:
            md.mask_predictor = real_predictor
    print("\n| denoising steps | model passes per name | letters per pass | ms per name | precision | recall "
          "| first-letter TV | distinct |\n|---|---|---|---|---|---|---|---|")
    for n_steps, rows in by_steps.items():  # means over the seeds
        mean = lambda f: sum(f(row) for row in rows) / len(rows)
        print(f"| {n_steps} | {mean(lambda x: x[0]):.2f} | {mean(lambda x: x[1]):.2f} | {mean(lambda x: x[2]):.1f} "
              f"| {mean(lambda x: x[3]['precision']):.3f} | {mean(lambda x: x[3]['recall']):.3f} "
              f"| {mean(lambda x: x[3]['first_tv']):.3f} | {mean(lambda x: x[3]['distinct']):.1%} |")


if __name__ == '__main__':
    main()
