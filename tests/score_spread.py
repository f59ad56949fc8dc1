"""How steady --score is: the same names scored with differently seeded sets of hidden letters.

Not part of the unit tests. --score averages each c_k over every set of k hidden letters, or
over score_sets of them drawn at random (from a generator seeded with the name) where there are
more: names of up to 9 letters are scored exactly, longer ones by sampling. For real held-out
names of each length from 10 to 15 letters, this scores each with the generator seeded five
other ways and prints the spread of the figure per character, and the time of one score.

Run: python microdiffusion.py --save model.json
     pypy3 tests/score_spread.py --load model.json
"""
import argparse
import os
import random
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import microdiffusion as md
import runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='input.txt')
    parser.add_argument('--load', required=True, help='a model saved with --save')
    parser.add_argument('--seed', type=int, default=42, help='the seed it was trained with')
    parser.add_argument('--names', type=int, default=3, help='names of each length')
    args = parser.parse_args()
    run = runs.load(args.input, args.seed, args.load)
    print(f"# {sys.implementation.name} {sys.version.split()[0]}; at most {md.score_sets} sets of k hidden "
          f"letters for each k\n| letters | names | largest spread per character | largest standard deviation "
          f"| seconds per score |\n|---|---|---|---|---|")
    real_random = md.random.Random
    for n_letters in range(10, md.max_letters + 1):
        names = [name for name in run.heldout_names if len(name) == n_letters][:args.names]
        spreads, deviations, seconds = [], [], []
        for name in names:
            figures = []
            for variant in range(5):  # the sets drawn from five other seeds
                md.random.Random = lambda seed, v=variant: real_random(f"{seed}/{v}")
                try:
                    start = time.time()
                    length_nats, letters_nats = md.score(name, run.tok, run.weights, run.length_probs)
                    seconds.append(time.time() - start)
                finally:
                    md.random.Random = real_random
                figures.append((length_nats + letters_nats) / (n_letters + 1))
            spreads.append(max(figures) - min(figures))
            deviations.append(statistics.stdev(figures))
        if names:
            print(f"| {n_letters} | {', '.join(names)} | {max(spreads):.4f} | {max(deviations):.4f} "
                  f"| {statistics.median(seconds):.2f} |", flush=True)


if __name__ == '__main__':
    main()
