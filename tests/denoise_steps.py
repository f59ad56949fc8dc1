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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='input.txt')
    parser.add_argument('--seeds', default='42,1,2')
    parser.add_argument('--steps', default='4,8,16,64', help='numbers of denoising steps')
    parser.add_argument('--samples', type=int, default=1000)
    parser.add_argument('--load', help='a model saved with --save (its seed is used) instead of training')
    args = parser.parse_args()
    print(f"# {sys.implementation.name} {sys.version.split()[0]}, {args.samples} names per setting")
    print("| seed | denoising steps | model passes per name | letters per pass | ms per name "
          "| precision | recall | first-letter TV | distinct |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    seeds = [int(s) for s in args.seeds.split(',')]
    names, _, names_sha256 = md.read_names(args.input)
    md.pause_collector()
    for seed in seeds[:1] if args.load else seeds:
        rng, tok, train_names, heldout_names, length_probs, state_dict = md.prepare(names, seed)
        if args.load:
            model_args = md.make_parser().parse_args(['--seed', str(seed)])
            length_probs, _, _ = md.load_model(args.load, tok, model_args, names_sha256, state_dict)
        else:
            md.train(train_names, tok, state_dict, md.num_steps, md.batch_size, rng)
        weights = md.as_floats(state_dict)
        judge = nq.Judge(train_names, heldout_names)
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
                print(f"| {seed} | {n_steps} | {len(passes) / args.samples:.2f} | {letters / len(passes):.2f} "
                      f"| {per_name * 1000:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['first_tv']:.3f} "
                      f"| {r['distinct']:.1%} |", flush=True)
        finally:
            md.mask_predictor = real_predictor


if __name__ == '__main__':
    main()
