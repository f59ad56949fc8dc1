"""The default run's training loss, step by step, and the held-out NELBO it reaches: the data of
the README's third figure (tests/figures/training_curve.json). Not a unit test.

It runs microdiffusion.py's own main() with the default settings in this process (one worker:
the same digits as any number), keeping what train() returns.

Run: pypy3 tests/training_curve.py            (about 40 s; the same digits as CPython)
"""
import contextlib
import io
import json
import os
import sys
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import microdiffusion as md


def main():
    kept, real_train = {}, md.train
    def keeping_train(*args):
        kept['losses'] = real_train(*args)
        return kept['losses']
    out = io.StringIO()
    with mock.patch.object(md, 'train', keeping_train), contextlib.redirect_stdout(out):
        md.main(['--workers', '1', '--num-samples', '0'])
    nelbo_line = next(line for line in out.getvalue().splitlines() if line.startswith('held-out NELBO'))
    data = {'command': 'python microdiffusion.py', 'losses': kept['losses'],
            'heldout_nelbo': float(nelbo_line.split()[2]),
            'num_steps': md.num_steps, 'batch_size': md.batch_size}
    path = os.path.join(HERE, 'figures', 'training_curve.json')
    with open(path, 'w') as f:
        json.dump(data, f)
    recent = kept['losses'][-100:]
    print(f"wrote {path}: {len(kept['losses'])} steps, mean of the last 100 "
          f"{sum(recent) / len(recent):.4f}, held-out NELBO {data['heldout_nelbo']:.3f}")


if __name__ == '__main__':
    main()
