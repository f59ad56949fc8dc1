"""How fast is microdiffusion's engine, and what made it so? (stdlib; not a unit test)

Times, interleaved in one process, one training step of one name (forward, backward, and the
gradient read out as name_gradient does) on the same model and weights:
  plain   a deliberately plain micrograd-style engine (the BASELINE, defined below): a set of
          children, a closure per node for its backward, a recursive topological sort
and microdiffusion's Value with its speed-ups added one at a time:
  tuples of local gradients, a depth-first sort on its own stack (no recursion), binary nodes
  only (every sum and dot product a chain of + and *), the cyclic collector on;
  + the collector paused; + n-ary sum and dot nodes; + the tape instead of the sort;
  + the last layer finishing only the masked positions: this engine.
and this engine with one thing changed: the last layer at every position, the collector on,
or fused attention, RMSNorm and cross-entropy nodes (one node per block, the gradient derived
by hand: not used by the file). Then a forward pass on plain floats (sampling, evaluation)
against one on Values, and the model passes the sampler makes.
A speed-up is the ratio of two medians over the interleaved repeats (interleaved, so that a
machine whose speed drifts moves every variant alike): so 'vs this' is the speed-up of a row
divided by this engine's. Nodes are counted on one fixed case: 3 of isabella's
8 letters hidden.

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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import microdiffusion as md
from float_reference import float_name_gradient


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


def plain_forward_loss(token_ids, clean, sd, mask_id):  # mask_id: the number of letters
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
            logits = linear(x[pos], sd['wte'][:mask_id])  # the letters' rows only
            losses.append(-softmax(logits)[clean[pos]].log())
    return sum(losses) * (1.0 / len(losses))
# END OF BASELINE
# ---------------------------------------------------------------------------------------------


def sorted_backward(loss):
    """backward() as a depth-first sort on its own stack, then the chain rule, instead of the
    tape: the order of nodes is found again for every graph."""
    topo, seen, stack = [], set(), [(loss, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            topo.append(node)
        elif id(node) not in seen:
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in node._children if child._children)
    loss.grad = 1.0
    for node in reversed(topo):
        for child, local_grad in zip(node._children, node._local_grads):
            child.grad += local_grad * node.grad
    md.Value.tape.clear()


def binary_nodes():
    """dot and total from binary nodes only: n products and n - 1 additions, as micrograd does."""
    return {'dot': lambda ws, xs: sum(w * x for w, x in zip(ws, xs)), 'total': sum}


def fused_nodes():
    """attention, rmsnorm and cross_entropy as fused nodes: each output one node with a local
    gradient derived by hand. Kept here to measure; the file builds them from plain ops."""
    Value = md.Value
    def attention(q, keys, values):  # out_d = sum_j w_j v_jd, w = softmax(s), s_j = q . k_j / c
        if not isinstance(q[0], Value):
            return md_blocks['attention'](q, keys, values)
        c = math.sqrt(len(q))
        scores = [md.dot(q, k) for k in keys]  # one n-ary node each, then fused from here on
        weights = md_blocks['softmax']([s.data / c for s in scores])
        outputs = []
        for d in range(len(q)):  # d(out_d)/d(v_jd) = w_j, d(out_d)/d(s_j) = w_j (v_jd - out_d) / c
            column = [v[d] for v in values]
            v_data = [v.data for v in column]
            out = sum(w * x for w, x in zip(weights, v_data))
            local = [w * (x - out) / c for w, x in zip(weights, v_data)] + weights
            outputs.append(Value(out, scores + column, local))
        return outputs
    def rmsnorm(x):  # d(scale)/d(x_i) = -x_i scale^3 / n
        if not isinstance(x[0], Value):
            return md_blocks['rmsnorm'](x)
        data = [xi.data for xi in x]
        scale = (sum(xi * xi for xi in data) / len(data) + 1e-5) ** -0.5
        scale = Value(scale, tuple(x), tuple(-xi * scale ** 3 / len(data) for xi in data))
        return [xi * scale for xi in x]
    def cross_entropy(logits, target):  # d(loss)/d(z_j) = softmax(z)_j - [j == target]
        if not isinstance(logits[0], Value):
            return md_blocks['cross_entropy'](logits, target)
        data = [z.data for z in logits]
        top = max(data)
        log_total = top + math.log(sum(math.exp(z - top) for z in data))
        return Value(log_total - data[target], tuple(logits),
                     tuple(math.exp(z - log_total) - (j == target) for j, z in enumerate(data)))
    return {'attention': attention, 'rmsnorm': rmsnorm, 'cross_entropy': cross_entropy}


md_blocks = {name: getattr(md, name) for name in ('softmax', 'attention', 'rmsnorm', 'cross_entropy', 'dot', 'total',
                                                  'linear')}
md_methods = {name: getattr(md.Value, name) for name in ('__add__', '__mul__', 'relu')}


def before_the_last_tricks():
    """The engine as it was before its three newest tricks: linear reads its input's numbers in
    every row's dot product, a plain number in + or * becomes a child Value, and ReLU is a node."""
    Value = md.Value
    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0))
    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))
    def relu(self):
        return Value(max(0.0, self.data), (self,), (float(self.data > 0),))
    linear = lambda x, w: [md.dot(w_row, x) for w_row in w]
    return {'linear': ('block', linear), '__add__': ('method', __add__), '__mul__': ('method', __mul__),
            'relu': ('method', relu)}


def with_tricks_undone(undone, fn):
    """fn, run with some of the engine's tricks undone (names from before_the_last_tricks)."""
    def wrapped(*args):
        for name, (kind, old) in undone.items():
            setattr(md if kind == 'block' else md.Value, name, old)
        try:
            return fn(*args)
        finally:
            for name, (kind, _) in undone.items():
                setattr(md if kind == 'block' else md.Value, name, (md_blocks if kind == 'block' else md_methods)[name])
    return wrapped


def with_blocks(blocks, fn):
    """fn, run with some of microdiffusion's building blocks replaced."""
    def wrapped(*args):
        for name, block in blocks.items():
            setattr(md, name, block)
        try:
            return fn(*args)
        finally:
            for name in blocks:
                setattr(md, name, md_blocks[name])
    return wrapped


def main():
    parser = argparse.ArgumentParser(description='time the plain engine against microdiffusion')
    parser.add_argument('--repeats', type=int, default=7, help='timed repeats of each case (median taken)')
    args = parser.parse_args()
    print(f"{sys.implementation.name} {sys.version.split()[0]} on {os.cpu_count()} cores")

    rng = random.Random(0)
    names = ['isabella', 'olivia', 'sophia', 'emma', 'ava', 'mia', 'zoe', 'quinn', 'xavier', 'jakob', 'charlotte']
    tok = md.Tokenizer(names)
    state_dict = md.init_params(tok.vocab_size, rng)
    plain_sd = {name: [[PlainValue(p.data) for p in row] for row in matrix] for name, matrix in state_dict.items()}
    weights = md.as_floats(state_dict)
    project_params = md.parameters(state_dict)
    plain_params = [p for matrix in plain_sd.values() for row in matrix for p in row]
    n_letters = len(tok.chars)

    # one corrupted name per repeat, the same for every engine; the first is fixed, so that its
    # node counts are comparable: 3 of isabella's 8 letters hidden
    clean = tok.encode('isabella')
    cases = [(clean, [tok.MASK if pos in (0, 3, 5) else token for pos, token in enumerate(clean)])]
    for _ in range(args.repeats - 1):
        clean = tok.encode(rng.choice(names))
        cases.append((clean, md.corrupt(clean, md.noise_level(rng), tok, rng)))

    # the two engines compute the same loss and gradients
    clean, noisy = cases[0]
    masked = [pos for pos, token in enumerate(noisy) if token == tok.MASK]
    plain_loss = plain_forward_loss(noisy, clean, plain_sd, n_letters)
    plain_loss.backward()
    project_loss, project_grad = md.name_gradient(clean, noisy, tok, state_dict)
    grad_gap = max(abs(a.grad - b) for a, b in zip(plain_params, project_grad))
    print(f"same loss: plain {plain_loss.data:.12f}, project {project_loss:.12f}; "
          f"largest gradient difference {grad_gap:.1e}")
    for p in plain_params:
        p.grad = 0.0
    del plain_loss

    counts = {}
    def plain_step(case):
        loss = plain_forward_loss(case[1], case[0], plain_sd, n_letters)
        counts['last step'] = loss.backward()
        [p.grad for p in plain_params]
        for p in plain_params:
            p.grad = 0.0
    def project_step(all_positions=False, backward=None):
        def step(case):  # as name_gradient does it
            clean, noisy = case
            masked = [pos for pos, token in enumerate(noisy) if token == tok.MASK]
            logits = md.mask_predictor(noisy, tok, state_dict, None if all_positions else masked)
            loss = md.masked_loss(logits, clean, masked)
            counts['last step'] = len(md.Value.tape)
            (backward or md.Value.backward)(loss)
            [p.grad for p in project_params]
            for p in project_params:
                p.grad = 0.0
        return step
    def collector(on, fn):
        def wrapped(case):
            (gc.enable if on else gc.disable)()
            try:
                fn(case)
            finally:
                gc.enable()
        return wrapped

    binary, fused, old = binary_nodes(), fused_nodes(), before_the_last_tricks()
    def older(fn, *keep):  # fn with the newest tricks undone, but those named in keep
        return with_tricks_undone({k: v for k, v in old.items() if k not in keep}, fn)
    this = 'this engine'
    step_cases = (
        ('plain engine (baseline)', collector(True, plain_step)),
        ('Value, a sorted graph, binary nodes, gc on', collector(True, older(with_blocks(binary, project_step(True, sorted_backward))))),
        ('  + collector paused', collector(False, older(with_blocks(binary, project_step(True, sorted_backward))))),
        ('  + n-ary sum and dot', collector(False, older(project_step(True, sorted_backward)))),
        ('  + the tape', collector(False, older(project_step(True)))),
        ('  + last layer at masked positions', collector(False, older(project_step()))),
        ('  + linear reads its input once', collector(False, older(project_step(), 'linear'))),
        ('  + constants are not nodes', collector(False, older(project_step(), 'linear', '__add__', '__mul__'))),
        ('  + an on ReLU is its input: ' + this, collector(False, project_step())),
        ('this engine, last layer at every position', collector(False, project_step(True))),
        ('this engine, collector on', collector(True, project_step())),
        ('this engine, a sorted graph', collector(False, project_step(False, sorted_backward))),
    ) + tuple((f'this engine + fused {name} (not used)', collector(False, with_blocks({name: block}, project_step())))
              for name, block in fused.items()) + (
        ('this engine + all three fused (not used)', collector(False, with_blocks(fused, project_step()))),
    )
    weights_now = md.as_floats(state_dict)
    step_cases += (('hand-written floats (tests/float_reference.py)',
                    collector(False, lambda case: (float_name_gradient(case[0], case[1], tok, weights_now),
                                                   counts.update({'last step': 0})))),)
    reference = '  + an on ReLU is its input: ' + this
    canvas = [tok.MASK] * 6 + [tok.END]
    forward_cases = (
        ('forward on Values, 6 letters and END', lambda: (md.mask_predictor(canvas, tok, state_dict), md.Value.tape.clear())),
        ('forward on floats', lambda: md.mask_predictor(canvas, tok, weights)),
    )
    timings = {label: [] for label, _ in step_cases + forward_cases}
    for case in cases:  # interleaved: every variant sees the same machine state
        for label, fn in step_cases:
            start = time.perf_counter()
            fn(case)
            timings[label].append(time.perf_counter() - start)
            if case is cases[0]:  # nodes counted on one case, the first
                counts[label] = counts['last step']
            gc.collect()
        for label, fn in forward_cases:
            start = time.perf_counter()
            fn()
            timings[label].append(time.perf_counter() - start)
            gc.collect()

    med = {key: statistics.median(values) for key, values in timings.items()}
    def speed_up(reference, label):  # a ratio of medians: speed-ups multiply along the table
        return med[reference] / med[label]
    print(f"{'one training step of one name':48s} {'median ms':>9s} {'speed-up':>9s} {'vs this':>8s} {'nodes':>7s}")
    for label, _ in step_cases:
        print(f"{label:48s} {med[label] * 1000:9.1f} {speed_up('plain engine (baseline)', label):8.1f}x "
              f"{speed_up(reference, label):7.2f}x {f'{counts[label]:,}' if counts[label] else '-':>7s}")
    print(f"{'forward pass':48s} {'median ms':>9s} {'speed-up':>9s}")
    for label, _ in forward_cases:
        print(f"{label:48s} {med[label] * 1000:9.1f} {speed_up(forward_cases[0][0], label):8.1f}x")
    print("(nodes: those a step makes, leaves not counted, on the first case: 3 of isabella's 8 letters hidden)")

    # the sampler runs the model only at steps that commit something
    length_probs = md.length_model(names)
    calls, letters = [], []
    real_predictor = md.mask_predictor
    def counting_predictor(canvas, tok, w, positions=None):
        calls.append(1)
        return real_predictor(canvas, tok, w, positions)
    md.mask_predictor = counting_predictor
    try:
        start = time.perf_counter()
        for _ in range(20):
            letters.append(len(md.sample(tok, weights, length_probs, rng, 64)[0]))
        per_sample = (time.perf_counter() - start) / 20
    finally:
        md.mask_predictor = real_predictor
    print(f"sampling: {len(calls) / 20:.1f} model passes per name of {sum(letters) / 20:.1f} letters "
          f"instead of 64, {per_sample * 1000:.1f} ms per name")


if __name__ == '__main__':
    main()
