"""Names emerging side by side: the canvases of several samples every few denoising steps.

Not part of the unit tests. Loads a model saved with `microdiffusion.py --save` and draws names
exactly as that run would after its evaluation (the same generator state, the same sampler),
then prints each one's canvas at every `--every`-th of the 64 steps: '_' is a hidden letter.

Run: python microdiffusion.py --save model.json
     python tests/emerging.py --load model.json [--names 8] [--every 8]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import microdiffusion as md
import runs


def canvas_at(trace, step):
    """The canvas after `step` steps: the trace lists only the steps that changed it."""
    return [canvas for s, _, _, canvas in trace if s <= step][-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--input', default='input.txt')
    parser.add_argument('--load', required=True, help='a model saved with --save')
    parser.add_argument('--seed', type=int, default=42, help='the seed it was trained with')
    parser.add_argument('--names', type=int, default=8)
    parser.add_argument('--every', type=int, default=8)
    parser.add_argument('--denoise-steps', type=int, default=64)
    args = parser.parse_args()
    run = runs.load(args.input, args.seed, args.load)
    tok = run.tok
    traces = [md.sample(tok, run.weights, run.length_probs, run.rng, args.denoise_steps)[1]
              for _ in range(args.names)]
    width = max(len(trace[0][3]) - 1 for trace in traces)  # the longest name's letters
    print("step     t  " + '  '.join(f"{n + 1:<{width}d}" for n in range(args.names)).rstrip())
    for step in range(0, args.denoise_steps + 1, args.every):
        t = md.cosine_noise(step, args.denoise_steps)
        row = '  '.join(f"{tok.decode(canvas_at(trace, step)):{width}s}" for trace in traces)
        print(f"{step:4d}  {t:.2f}  {row}".rstrip())


if __name__ == '__main__':
    main()
