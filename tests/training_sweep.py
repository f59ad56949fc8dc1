"""The measurement that chose the batch size, learning rate and number of steps.

Not part of the unit tests. Each setting is a batch size B, a learning rate and a number of
steps; the steps of each B are those that fit one budget of CPython wall time with 2 workers
(the per-name times come from --ms-per-name, measured on CPython with
`python tests/training_sweep.py --time`). Training itself runs wherever this script runs:
PyPy prints the same digits several times faster. For every setting and seed it trains the
model and prints the held-out NELBO on all 1,000 held-out names (the same names and masks for
every setting of one seed, so the settings are compared pairwise).

Run: python tests/training_sweep.py --input ../shared/names.txt --time
     pypy3 tests/training_sweep.py --input ../shared/names.txt --seeds 42,1,2 --budget 65
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
parser.add_argument('--seeds', default='42,1,2')
parser.add_argument('--budget', type=float, default=65.0, help='seconds of CPython training with 2 workers')
parser.add_argument('--ms-per-name', default='1:18.8,2:14.6,4:12.5,8:12.4,16:10.9',
                    help='B:milliseconds per name on CPython, from --time')
parser.add_argument('--settings', default='1:0.005,1:0.01,2:0.01,2:0.02,4:0.01,4:0.02,4:0.04,8:0.02,8:0.04,16:0.04,16:0.08',
                    help='B:learning rate pairs')
parser.add_argument('--scale', type=float, default=1.0, help='train scale times the budget (2x, 4x ...)')
parser.add_argument('--time', action='store_true', help='measure ms per name on this Python, 1 and 2 workers')
args = parser.parse_args()

if args.time:
    rng, tok, train_names, _, _, _, _ = md.prepare(args.input, 42)
    print(f"# {sys.implementation.name} {sys.version.split()[0]}, {os.cpu_count()} cores")
    for batch_size in (1, 2, 4, 8, 16):
        for n_workers in (1, 2):
            workers = md.start_workers(min(n_workers, batch_size), tok)
            state_dict = md.init_params(tok.vocab_size, random.Random(1))
            n_steps = max(15, 240 // batch_size)
            md.train(train_names, tok, state_dict, 3, random.Random(0), batch_size, None, workers)  # warm up
            start = time.time()
            md.train(train_names, tok, state_dict, n_steps, random.Random(0), batch_size, None, workers)
            per_step = (time.time() - start) / n_steps
            if workers:
                workers.close()
            print(f"B={batch_size:2d} workers={n_workers}: {per_step * 1000:6.1f} ms/step, "
                  f"{per_step / batch_size * 1000:5.2f} ms/name", flush=True)
    # where a step of the default batch goes: each name's gradient (parallel), the rest (serial)
    batch_size = md.batch_size
    state_dict = md.init_params(tok.vocab_size, random.Random(1))
    params = md.parameters(state_dict)
    optimizer = md.Adam(params)
    rng = random.Random(0)
    name_times, serial_times = [], []
    for step in range(60):
        batch = []
        for b in range(batch_size):
            clean = tok.encode(train_names[step * batch_size + b])
            batch.append((clean, md.corrupt(clean, md.noise_level(rng), rng, tok.MASK)))
        start = time.time()
        results = [md.name_gradient(clean, noisy, tok, state_dict, params) for clean, noisy in batch]
        middle = time.time()
        for p, *name_grads in zip(params, *(grad for _, grad in results)):
            p.grad = sum(name_grads) / batch_size
        optimizer.step(0.0)
        name_times.append((middle - start) / batch_size)
        serial_times.append(time.time() - middle)
    per_name, serial = sorted(name_times)[30], sorted(serial_times)[30]
    print(f"B={batch_size}: one name's gradient {per_name * 1000:.1f} ms, averaging and Adam {serial * 1000:.1f} ms (medians)")
    sys.exit()

ms_per_name = {int(b): float(ms) for b, ms in (pair.split(':') for pair in args.ms_per_name.split(','))}
settings = [(int(b), float(lr)) for b, lr in (pair.split(':') for pair in args.settings.split(','))]
print(f"# {sys.implementation.name} {sys.version.split()[0]}, budget {args.budget:g} s x {args.scale:g}", flush=True)
print("| seed | B | learning rate | steps | names seen | held-out NELBO | mean loss, last 10% |")
print("|---|---|---|---|---|---|---|", flush=True)
for seed in [int(s) for s in args.seeds.split(',')]:
    for batch_size, lr in settings:
        n_steps = round(args.scale * args.budget * 1000 / ms_per_name[batch_size] / batch_size)
        start = time.time()
        rng, tok, train_names, heldout_names, length_probs, state_dict, _ = md.prepare(args.input, seed)
        md.learning_rate = lr
        losses = md.train(train_names, tok, state_dict, n_steps, rng, batch_size)
        per_char, _ = md.heldout_nelbo(heldout_names, tok, md.as_floats(state_dict), length_probs, random.Random(seed + 1))
        tail = losses[-max(1, n_steps // 10):]
        print(f"| {seed} | {batch_size} | {lr:g} | {n_steps:,} | {n_steps * batch_size:,} | {per_char:.4f} "
              f"| {sum(tail) / len(tail):.4f} |  <!-- {time.time() - start:.0f}s -->", flush=True)
