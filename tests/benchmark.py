"""How fast is microdiffusion's engine, and what made it so? (stdlib; not a unit test)

Times, interleaved in one process, the median seconds per training step and per 16-position
forward pass of the same model, with the same weights, on:
  plain      a deliberately plain micrograd-style engine (the BASELINE, defined below): a set
             of children, a closure per node for its backward, a recursive topological sort
  project    microdiffusion's Value: n-ary sum and dot nodes, fused rmsnorm, attention and
             cross-entropy nodes, an iterative topological sort; timed with the cyclic garbage
             collector on (as a script runs by default) and off (as train() runs it)
  floats     microdiffusion's forward pass on plain floats: no graph at all (sampling, evaluation)
and prints the nodes each step builds, the ratios, and the model passes the sampler makes.

Run: python tests/benchmark.py [--repeats N]     (also under pypy3)
"""
import argparse
import gc
import math
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import microdiffusion as md


# ---------------------------------------------------------------------------------------------
# BASELINE: a plain micrograd-style engine, kept only to measure against
class PlainValue:
    def __init__(self, data, _children=()):
        self.data = data
        self.grad = 0.0
        self._backward = lambda: None
        self._prev = set(_children)

    def __add__(self, other):
        other = other if isinstance(other, PlainValue) else PlainValue(other)
        out = PlainValue(self.data + other.data, (self, other))
        def _backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, PlainValue) else PlainValue(other)
        out = PlainValue(self.data * other.data, (self, other))
        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def __pow__(self, exponent):
        out = PlainValue(self.data ** exponent, (self,))
        def _backward():
            self.grad += exponent * self.data ** (exponent - 1) * out.grad
        out._backward = _backward
        return out

    def exp(self):
        out = PlainValue(math.exp(self.data), (self,))
        def _backward():
            self.grad += out.data * out.grad
        out._backward = _backward
        return out

    def log(self):
        out = PlainValue(math.log(self.data), (self,))
        def _backward():
            self.grad += out.grad / self.data
        out._backward = _backward
        return out

    def relu(self):
        out = PlainValue(max(0.0, self.data), (self,))
        def _backward():
            self.grad += (out.data > 0) * out.grad
        out._backward = _backward
        return out

    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other ** -1

    def backward(self):
        topo, visited = [], set()
        def build_topo(v):  # recursive, and the closure makes each graph a reference cycle
            if v not in visited:
                visited.add(v)
                for child in v._prev:
                    build_topo(child)
                topo.append(v)
        build_topo(self)
        self.grad = 1.0
        for v in reversed(topo):
            v._backward()
        return sum(1 for v in topo if v._prev)  # nodes that were computed: leaves not counted


def plain_forward_loss(token_ids, clean, sd, mask_id):
    """The same model written with nothing but the plain engine's scalar ops."""
    def linear(x, w):
        return [sum(wi * xi for wi, xi in zip(w_row, x)) for w_row in w]
    def rmsnorm(x):
        scale = (sum(xi * xi for xi in x) / len(x) + 1e-5) ** -0.5
        return [xi * scale for xi in x]
    def softmax(logits):
        top = max(z.data for z in logits)
        exps = [(z - top).exp() for z in logits]
        total = sum(exps)
        return [e / total for e in exps]
    n_pos, hd = len(token_ids), md.head_dim
    x = [rmsnorm([te + pe for te, pe in zip(sd['wte'][tok], sd['wpe'][pos])]) for pos, tok in enumerate(token_ids)]
    for i in range(md.n_layer):
        x_res = x
        xn = [rmsnorm(xi) for xi in x]
        q = [linear(xi, sd[f'layer{i}.attn_wq']) for xi in xn]
        k = [linear(xi, sd[f'layer{i}.attn_wk']) for xi in xn]
        v = [linear(xi, sd[f'layer{i}.attn_wv']) for xi in xn]
        out = [[] for _ in range(n_pos)]
        for h in range(md.n_head):
            for pos in range(n_pos):
                scores = [sum(q[pos][h * hd + d] * k[o][h * hd + d] for d in range(hd)) / math.sqrt(hd) for o in range(n_pos)]
                weights = softmax(scores)
                out[pos].extend(sum(weights[o] * v[o][h * hd + d] for o in range(n_pos)) for d in range(hd))
        x = [[a + b for a, b in zip(linear(o, sd[f'layer{i}.attn_wo']), r)] for o, r in zip(out, x_res)]
        x_res = x
        x = [linear([hi.relu() for hi in linear(rmsnorm(xi), sd[f'layer{i}.mlp_fc1'])], sd[f'layer{i}.mlp_fc2']) for xi in x]
        x = [[a + b for a, b in zip(xi, r)] for xi, r in zip(x, x_res)]
    losses = []
    for pos in range(n_pos):
        if token_ids[pos] == mask_id:
            logits = linear(x[pos], sd['wte'])
            logits[mask_id] = logits[mask_id] - 1e6
            losses.append(-softmax(logits)[clean[pos]].log())
    return sum(losses) * (1.0 / len(losses))
# END OF BASELINE
# ---------------------------------------------------------------------------------------------


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description='time the plain engine against microdiffusion')
    parser.add_argument('--repeats', type=int, default=7, help='timed repeats of each case (median taken)')
    args = parser.parse_args()
    print(f"{sys.implementation.name} {sys.version.split()[0]} on {os.cpu_count()} cores")

    rng = random.Random(0)
    names = ['isabella', 'olivia', 'sophia', 'emma', 'ava', 'mia', 'zoe', 'quinn', 'xavier', 'jakob', 'charlotte']
    tok = md.Tokenizer(names, md.block_size)
    state_dict = md.init_params(tok.vocab_size, rng)
    plain_sd = {name: [[PlainValue(p.data) for p in row] for row in matrix] for name, matrix in state_dict.items()}
    weights = md.as_floats(state_dict)
    project_params = md.parameters(state_dict)
    plain_params = [p for matrix in plain_sd.values() for row in matrix for p in row]
    optimizer = md.Adam(project_params)

    # one fixed corrupted name per repeat, the same for every engine
    cases = []
    for _ in range(args.repeats):
        clean = tok.encode(rng.choice(names))
        cases.append((clean, md.corrupt(clean, md.noise_level(rng), rng, tok.MASK)))

    # the two engines compute the same loss and gradients
    clean, noisy = cases[0]
    plain_loss = plain_forward_loss(noisy, clean, plain_sd, tok.MASK)
    plain_loss.backward()
    project_loss = md.masked_loss(md.mask_predictor(noisy, state_dict), clean, noisy, tok.MASK)
    project_loss.backward()
    grad_gap = max(abs(a.grad - b.grad) for a, b in zip(plain_params, project_params))
    print(f"same loss: plain {plain_loss.data:.12f}, project {project_loss.data:.12f}; "
          f"largest gradient difference {grad_gap:.1e}")
    for p in plain_params + project_params:
        p.grad = 0.0
    del plain_loss, project_loss
    gc.collect()

    counts = {}
    def plain_step(case):
        loss = plain_forward_loss(case[1], case[0], plain_sd, tok.MASK)
        counts['plain'] = loss.backward()
        for p in plain_params:
            p.data -= 1e-9 * p.grad  # the update costs the same in both; keep the weights still
            p.grad = 0.0
    def project_step(case):
        loss = md.masked_loss(md.mask_predictor(case[1], state_dict), case[0], case[1], tok.MASK)
        counts['project'] = loss.backward()
        optimizer.step(0.0)  # lr 0: the full Adam loop, weights unchanged
    def without_gc(fn):
        def wrapped(case):
            gc.disable()
            try:
                fn(case)
            finally:
                gc.enable()
        return wrapped

    timings = {key: [] for key in ('plain step', 'project step, gc on', 'project step, gc off',
                                   'plain forward', 'project forward', 'floats forward')}
    for case in cases:  # interleaved: every engine sees the same machine state
        for key, fn in (('plain step', plain_step), ('project step, gc on', project_step),
                        ('project step, gc off', without_gc(project_step))):
            start = time.perf_counter()
            fn(case)
            timings[key].append(time.perf_counter() - start)
            gc.collect()
        canvas = [tok.MASK] * md.block_size
        for key, fn in (('plain forward', lambda: plain_forward_loss(canvas, case[0], plain_sd, tok.MASK)),
                        ('project forward', lambda: md.mask_predictor(canvas, state_dict)),
                        ('floats forward', lambda: md.mask_predictor(canvas, weights))):
            start = time.perf_counter()
            fn()
            timings[key].append(time.perf_counter() - start)
            gc.collect()

    med = {key: statistics.median(values) for key, values in timings.items()}
    print(f"{'case':24s} {'median s':>10s}")
    for key, value in med.items():
        print(f"{key:24s} {value:10.4f}")
    print(f"nodes per step: plain {counts['plain']:,}, project {counts['project']:,} (parameters and constants not counted)")
    print(f"training step speed-up: {med['plain step'] / med['project step, gc off']:.1f}x "
          f"(gc on: {med['plain step'] / med['project step, gc on']:.1f}x)")
    print(f"forward pass speed-up: graph {med['plain forward'] / med['project forward']:.1f}x, "
          f"floats {med['plain forward'] / med['floats forward']:.1f}x")

    # the sampler runs the model only at steps that commit something
    calls = []
    real_predictor = md.mask_predictor
    def counting_predictor(canvas, w, positions=None):
        calls.append(1)
        return real_predictor(canvas, w, positions)
    md.mask_predictor = counting_predictor
    try:
        start = time.perf_counter()
        for _ in range(5):
            md.sample(tok, weights, rng, 64)
        per_sample = (time.perf_counter() - start) / 5
    finally:
        md.mask_predictor = real_predictor
    print(f"sampling: {len(calls) / 5:.1f} model passes per name instead of 64, {per_sample:.3f} s per name")


if __name__ == '__main__':
    main()
