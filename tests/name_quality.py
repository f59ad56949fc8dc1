"""A judge of sampled names, on two axes at once: does each name look real (precision), and is
the set as varied as real names are (recall)?

A rule that scores only one of the two is won by collapse: a sampler that makes the same few
likely names over and over looks very real, and one that makes random strings is very
varied. So the judge reports both, beside reference rows that nobody tuned.

precision  a character 5-gram model with interpolated Kneser-Ney smoothing, fitted on the
           training names, scores the samples: nats per symbol (each letter and the end of
           the name). Lower: the samples look more like real names.
recall     a character 3-gram model of the same kind, fitted on the samples, scores the
           held-out names. Lower: the samples cover more of what real names do (first
           letters, lengths, letter patterns); a collapsed set leaves real names unlikely.
first TV   total-variation distance between the samples' first letters and the training
           names' (half the sum of absolute differences; 0 is the same histogram).
length TV  the same for lengths.
distinct, in training set (the whole split, whether training reached a name or not), held out
(never trained on), empty: shares of samples.

Reference rows: real names (the held-out names for precision, since the precision model has
seen every training name and training names would score too well; 1,000 training names drawn
at random for recall and the distances), and the left-to-right twin of tests/left_to_right.py,
trained on the same split, at temperatures 0.5 (microgpt's) and 1.

Run: python tests/name_quality.py [--input input.txt] [--seed 42] samples.txt [more.txt ...]
(one name per line; the seed picks the same train/held-out split as microdiffusion.py --seed)
"""
import argparse
import math
import os
import random
import sys
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import left_to_right as l2r
import runs

START, END = '^', '$'  # padding before a name, and the symbol that ends it


class KneserNey:
    """Interpolated Kneser-Ney character n-gram model over names (Chen & Goodman 1999), with one
    absolute discount per order, D = n1 / (n1 + 2 n2), n_c being how many n-grams occur c
    times. The highest order uses counts; lower orders use continuation counts (in how many
    contexts a suffix was seen), and the lowest order is interpolated with the uniform
    distribution over the alphabet, so that every symbol of the alphabet keeps some
    probability."""

    def __init__(self, names, order, alphabet):
        self.order = order
        self.symbols = sorted(set(alphabet)) + [END]
        # raw[k][context][symbol]: how often symbol follows the k symbols of context
        raw = [defaultdict(lambda: defaultdict(int)) for _ in range(order)]
        for name in names:
            padded = START * (order - 1) + name + END
            for i in range(order - 1, len(padded)):
                for k in range(order):
                    raw[k][padded[i - k:i]][padded[i]] += 1
        # lower orders count contexts, not occurrences: in how many different left contexts
        # was (context, symbol) seen. An n-gram that starts at the name's start has no left
        # context and keeps its raw count (as KenLM does)
        self.counts = [None] * (order - 1) + [raw[order - 1]]
        for k in range(order - 1):
            left = defaultdict(set)
            for context, row in raw[k + 1].items():
                for symbol in row:
                    left[(context[1:], symbol)].add(context[0])
            self.counts[k] = {context: {symbol: count if context.startswith(START) else len(left[(context, symbol)])
                                        for symbol, count in row.items()}
                              for context, row in raw[k].items()}
        self.discounts, self.totals = [], []
        for level in self.counts:
            values = [c for row in level.values() for c in row.values()]
            n1, n2 = values.count(1), values.count(2)
            # kept inside [0.05, 0.95]: with no count of 1 (a small, repetitive sample) the estimate
            # is 0, and a symbol the lower orders never saw would get no probability at all
            self.discounts.append(min(max(n1 / (n1 + 2 * n2), 0.05), 0.95) if n1 + n2 else 0.5)
            self.totals.append({context: sum(row.values()) for context, row in level.items()})

    def prob(self, context, symbol):
        """p(symbol | context), context being the order - 1 symbols before it (START-padded)."""
        p = 1.0 / len(self.symbols)  # the uniform floor
        for k in range(self.order):
            short = context[len(context) - k:] if k else ''
            row = self.counts[k].get(short)
            if not row:
                continue  # an unseen context passes its lower order's probability on unchanged
            total, discount = self.totals[k][short], self.discounts[k]
            p = max(row.get(symbol, 0) - discount, 0) / total + discount * len(row) / total * p
        return p

    def nll(self, name):
        """-log p(name), in nats, and its number of symbols (letters and the end)."""
        padded = START * (self.order - 1) + name + END
        total = 0.0
        for i in range(self.order - 1, len(padded)):
            total -= math.log(self.prob(padded[i - self.order + 1:i], padded[i]))
        return total, len(name) + 1

    def per_symbol(self, names):
        results = [self.nll(name) for name in names]
        return sum(r[0] for r in results) / sum(r[1] for r in results)


def histogram(values):
    counts = defaultdict(int)
    for value in values:
        counts[value] += 1
    return {value: c / len(values) for value, c in counts.items()}


def total_variation(a, b):
    """Half the sum of absolute differences of two histograms: 0 the same, 1 disjoint."""
    return 0.5 * sum(abs(a.get(key, 0.0) - b.get(key, 0.0)) for key in set(a) | set(b))


class Judge:
    """Fitted once on a split; judge(samples) then returns every figure for one list of names."""

    def __init__(self, train_names, heldout_names, precision_order=5, recall_order=3):
        self.train_names, self.heldout_names = train_names, heldout_names
        self.train_set, self.heldout_set = set(train_names), set(heldout_names)
        self.alphabet = sorted(set(''.join(train_names + heldout_names)))
        self.recall_order = recall_order
        self.precision_model = KneserNey(train_names, precision_order, self.alphabet)
        self.first_hist = histogram([name[:1] for name in train_names])
        self.length_hist = histogram([len(name) for name in train_names])

    def judge(self, samples):
        n = len(samples)
        in_train = sum(name in self.train_set for name in samples)
        in_heldout = sum(name in self.heldout_set and name not in self.train_set for name in samples)
        recall_model = KneserNey(samples, self.recall_order, self.alphabet)
        return {'n': n,
                'precision': self.precision_model.per_symbol(samples),
                'recall': recall_model.per_symbol(self.heldout_names),
                'first_tv': total_variation(histogram([name[:1] for name in samples]), self.first_hist),
                'length_tv': total_variation(histogram([len(name) for name in samples]), self.length_hist),
                'distinct': len(set(samples)) / n, 'in_train': in_train / n,
                'in_heldout': in_heldout / n, 'empty': sum(name == '' for name in samples) / n}

    def real_names(self, rng, n=1000):
        """The reference row: precision of the held-out names, and every other figure for n
        training names drawn at random."""
        row = self.judge(rng.sample(self.train_names, min(n, len(self.train_names))))
        row['precision'] = self.precision_model.per_symbol(self.heldout_names)
        return row


HEADER = ("| samples | n | precision | recall | first-letter TV | length TV | distinct | in training set "
          "| held out | empty |\n|---|---|---|---|---|---|---|---|---|---|")


def row_text(label, r):
    return (f"| {label} | {r['n']:,} | {r['precision']:.3f} | {r['recall']:.3f} | {r['first_tv']:.3f} "
            f"| {r['length_tv']:.3f} | {r['distinct']:.1%} | {r['in_train']:.1%} | {r['in_heldout']:.1%} "
            f"| {r['empty']:.1%} |")


def read_names(path):
    with open(path, encoding='utf-8') as f:
        return [line.strip().lower() for line in f.read().splitlines()]  # a blank line is an empty name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('samples', nargs='+', help='files of sampled names, one per line')
    parser.add_argument('--input', default='input.txt', help='the names file the model was trained on')
    parser.add_argument('--seed', type=int, default=42, help="the training run's seed: it picks the split")
    parser.add_argument('--twin-steps', type=int, default=l2r.num_steps,
                        help='training steps of the left-to-right twin (default 1000); 0 leaves its rows out')
    parser.add_argument('--twin-samples', type=int, default=1000, help='names the twin draws at each temperature')
    args = parser.parse_args()
    data = runs.split(args.input, args.seed)
    judge = Judge(data.train_names, data.heldout_names)
    print(HEADER)
    print(row_text('real names', judge.real_names(random.Random(args.seed))))
    if args.twin_steps:
        _, tok, bos, weights, _, _ = l2r.build(args.input, args.seed, args.twin_steps)
        for temperature in (0.5, 1.0):
            rng = random.Random(args.seed)
            twin_samples = [l2r.sample(tok, bos, weights, rng, temperature) for _ in range(args.twin_samples)]
            print(row_text(f'left to right, T {temperature:g}', judge.judge(twin_samples)))
    for path in args.samples:
        print(row_text(os.path.basename(path), judge.judge(read_names(path))))


if __name__ == '__main__':
    main()
