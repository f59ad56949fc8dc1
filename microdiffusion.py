"""
microdiffusion: a masked diffusion language model in one file of pure Python.

It learns from a list of human names and makes new ones the diffusion way: draw how long the
name will be, lay out that many [MASK] tokens and an END, then unmask them step by step, each
step guided by a transformer that predicts every hidden letter from the letters on both sides.
The diffusion companion of Karpathy's microgpt, as plain on purpose: a scalar autograd engine,
a 2-layer model of 6,848 parameters, a length counted rather than predicted, no dependencies;
the algorithm first, ending with the program that runs it, then the workshop.
"""
import math      # math.exp, math.log, math.cos, math.sqrt, math.pi, math.isfinite
import operator  # operator.mul: a dot product of plain floats
import random    # random.Random: seeded generators for data order, weights, noise and samples
import time      # elapsed and remaining time, in the progress line
from itertools import repeat  # the same tokenizer and model for every name a map runs on

# Let there be settings: every hyperparameter and sampler constant, once; the flags' defaults
block_size = 16        # the longest canvas: a name of up to 15 letters, then END
n_layer = 2            # transformer blocks
n_embd = 16            # width of every token's vector
n_head = 4             # attention heads
head_dim = n_embd // n_head
mlp_hidden = 4 * n_embd
init_std = 0.08        # weights start as N(0, 0.08^2)
t_min = 0.2            # training noise levels t are log-uniform in [t_min, 1]
num_steps = 1075       # training steps...
batch_size = 8         # ...of 8 names each, their gradients averaged: 8,600 names
learning_rate = 0.014  # Adam's, decaying linearly towards 0
beta1, beta2, eps_adam = 0.85, 0.99, 1e-8
seed = 42              # seeds the generator of the split, the weights, training and samples
n_heldout = 1000       # names held out to measure the model on (a tenth, if that is fewer)
denoise_steps = 64     # sampling steps from t = 1 to 0: at 64, each reveals at most one letter
SAMPLERS = ('confidence', 'random')  # surest letters first, or random order (see nelbo)
temperature_start = 1.0  # the confidence sampler's temperature at t = 1...
temperature_end = 1.0    # ...and at t = 0 (one that falls gives surer letters, less variety)
choice_noise = 1.0     # Gumbel noise times choice_noise * t stirs its surest-first order early on
num_samples = 20       # names printed at the end
max_letters = block_size - 1

# Let there be data: the names, each once (main sees to it), 1,000 held out to measure on
def split(names, rng):
    names = list(names)
    rng.shuffle(names)
    n_out = min(n_heldout, len(names) // 10)
    return names[n_out:], names[:n_out]

# Let there be a tokenizer: one id per character, then MASK and END
class Tokenizer:
    """The names' characters are ids 0..n-1; MASK (n) is a letter not revealed yet; END (n+1)
    closes every name and is never hidden, so the model always knows how long the name is."""

    def __init__(self, names):
        self.chars = sorted(set(''.join(names)))
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        self.MASK, self.END = len(self.chars), len(self.chars) + 1
        self.vocab_size = len(self.chars) + 2

    def encode(self, name):  # a name of L letters is a canvas of L + 1 tokens: letters, then END
        return [self.stoi[ch] for ch in name] + [self.END]

    def decode(self, canvas):  # the letters before END, with '_' for each MASK
        return ''.join('_' if token == self.MASK else self.chars[token] for token in canvas[:-1])

# Let there be lengths: how long a name will be is decided first, by counting
def length_model(names):
    """p(L): the share of names with L letters, the counts add-one smoothed over 1..max_letters."""
    counts = [0] + [1] * max_letters
    for name in names:
        counts[len(name)] += 1
    return [c / sum(counts) for c in counts]

def draw_length(length_probs, rng, shortest=1):
    """A length L from p(L), among L >= shortest (for a template: its letters and holes)."""
    return rng.choices(range(shortest, len(length_probs)), weights=length_probs[shortest:])[0]

# Let there be autograd: microgpt's scalar Value, with a tape and two n-ary nodes
class Value:
    """A number, its gradient, and how it was made: its children, and its local gradients."""
    __slots__ = ('data', 'grad', '_children', '_local_grads')
    tape = []  # every Value made from others, in the order made: each after its children

    def __init__(self, data, children=(), local_grads=()):
        self.data = data                  # the number computed in the forward pass
        self.grad = 0.0                   # d(loss)/d(this), filled in by backward()
        self._children = children         # the Values this one was computed from
        self._local_grads = local_grads   # d(this)/d(child), one per child
        if children:
            Value.tape.append(self)

    def __add__(self, other):
        if isinstance(other, Value):
            return Value(self.data + other.data, (self, other), (1.0, 1.0))
        return Value(self.data + other, (self,), (1.0,))  # a plain number: a constant, no child

    def __mul__(self, other):
        if isinstance(other, Value):
            return Value(self.data * other.data, (self, other), (other.data, self.data))
        return Value(self.data * other, (self,), (other,))  # a plain number: a constant, no child

    def __pow__(self, exponent):  # exponent is a plain number
        return Value(self.data ** exponent, (self,), (exponent * self.data ** (exponent - 1),))

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self):
        return Value(math.log(self.data), (self,), (1.0 / self.data,))

    def relu(self):  # on, x itself (gradient 1); off, the constant 0: no node either way
        return self if self.data > 0 else Value(0.0)

    # built from the ops above, so no gradient of their own; 1 - v calls v.__rsub__(1)
    def __neg__(self): return self * -1
    def __radd__(self, other): return self + other
    def __sub__(self, other): return self + (-other)
    def __rsub__(self, other): return other + (-self)          # other - self
    def __rmul__(self, other): return self * other
    def __truediv__(self, other): return self * other ** -1
    def __rtruediv__(self, other): return other * self ** -1   # other / self

    # two n-ary nodes, for speed: a sum or a dot product of n Values is one node, not n-1 or 2n-1
    @staticmethod
    def sum(values):  # d(sum)/d(x_i) = 1; values: a list or tuple
        return Value(sum(x.data for x in values), values, (1.0,) * len(values))

    @staticmethod
    def dot(ws, xs, x_data=None):  # d(w.x)/d(w_i) = x_i and d(w.x)/d(x_i) = w_i
        w_data, x_data = [w.data for w in ws], x_data or [x.data for x in xs]
        return Value(sum(map(operator.mul, w_data, x_data)), ws + xs, x_data + w_data)

    def backward(self):
        # the tape is already a topological order: every node was made after its children.
        # Walked from the end, it applies the chain rule from the loss back to the parameters
        self.grad = 1.0
        for node in reversed(Value.tape):
            node_grad = node.grad
            if node_grad == 0.0:
                continue  # behind a ReLU that was off, or off the loss's path: nothing flows back
            for child, local_grad in zip(node._children, node._local_grads):
                child.grad += local_grad * node_grad
        Value.tape.clear()  # the next graph starts a new tape

# Let there be parameters, by microgpt's state-dict names: wte (tied: it embeds the tokens and
# reads the letters out), wpe, and per layer attention (wq, wk, wv, wo) and MLP (fc1, fc2)
def init_params(vocab_size, rng):
    def matrix(n_out, n_in):
        return [[Value(rng.gauss(0, init_std)) for _ in range(n_in)] for _ in range(n_out)]
    state_dict = {'wte': matrix(vocab_size, n_embd), 'wpe': matrix(block_size, n_embd)}
    for i in range(n_layer):
        for name in ('attn_wq', 'attn_wk', 'attn_wv', 'attn_wo'):
            state_dict[f'layer{i}.{name}'] = matrix(n_embd, n_embd)
        state_dict[f'layer{i}.mlp_fc1'] = matrix(mlp_hidden, n_embd)
        state_dict[f'layer{i}.mlp_fc2'] = matrix(n_embd, mlp_hidden)
    return state_dict

def parameters(state_dict):  # every trainable Value, once, in a fixed order
    return [p for matrix in state_dict.values() for row in matrix for p in row]

def as_floats(state_dict):  # the weights: the same matrices of plain floats, to run with no graph
    return {name: [[p.data for p in row] for row in matrix] for name, matrix in state_dict.items()}

# Let there be microgpt's building blocks, on Values while training (a graph, for backward) or
# floats otherwise (no graph: faster). total, dot, exp, log, data, linear, relu tell them apart
def total(xs):  # x_1 + ... + x_n: one n-ary node for Values
    return Value.sum(xs) if isinstance(xs[0], Value) else sum(xs)
def dot(ws, xs):  # w_1 x_1 + ... + w_n x_n: one n-ary node for Values
    return Value.dot(ws, xs) if isinstance(xs[0], Value) else sum(map(operator.mul, ws, xs))
def exp(x):
    return x.exp() if isinstance(x, Value) else math.exp(x)
def log(x):
    return x.log() if isinstance(x, Value) else math.log(x)
def data(x):  # the plain number, for comparisons that need no gradient
    return x.data if isinstance(x, Value) else x

def linear(x, w):  # y = W x with no bias, as in microgpt
    if not isinstance(x[0], Value):
        return [sum(map(operator.mul, w_row, x)) for w_row in w]
    x_data = [xi.data for xi in x]  # x's numbers, read once for every row
    return [Value.dot(w_row, x, x_data) for w_row in w]

def relu(x):
    return [xi.relu() if isinstance(xi, Value) else max(0.0, xi) for xi in x]

def softmax(logits):
    top = max(data(z) for z in logits)  # exp of a large logit overflows; a shift changes nothing
    exps = [exp(z - top) for z in logits]
    inverse_total = 1 / total(exps)
    return [e * inverse_total for e in exps]

def rmsnorm(x):  # every vector comes out with a root mean square of 1, whatever its scale
    mean_square = dot(x, x) / len(x)
    scale = (mean_square + 1e-5) ** -0.5
    return [xi * scale for xi in x]

def attention(q, keys, values):  # one head at one position
    scores = [dot(q, k) / math.sqrt(len(q)) for k in keys]
    attn_weights = softmax(scores)
    return [dot(attn_weights, [v[d] for v in values]) for d in range(len(q))]

def cross_entropy(logits, target):  # -log softmax(logits)[target], by log-sum-exp: never log(0)
    top = max(data(z) for z in logits)
    return log(total([exp(z - top) for z in logits])) - (logits[target] - top)

# Let there be the model: a bidirectional transformer that predicts the hidden letters at once
def mask_predictor(canvas, tok, state_dict, positions=None):
    """Logits over the letters at the positions asked for (default: all), None at the others.
    state_dict holds Values while training and plain floats (as_floats) otherwise."""
    if positions is None:
        positions = range(len(canvas))
    x = [rmsnorm([te + pe for te, pe in zip(state_dict['wte'][token], state_dict['wpe'][pos])])
         for pos, token in enumerate(canvas)]
    for i in range(n_layer):
        x_norm = [rmsnorm(xi) for xi in x]
        keys = [linear(xi, state_dict[f'layer{i}.attn_wk']) for xi in x_norm]  # at every position
        values = [linear(xi, state_dict[f'layer{i}.attn_wv']) for xi in x_norm]
        x_next = [None] * len(canvas)
        # every position feeds the next layer, but the last only finishes those asked for
        for pos in positions if i == n_layer - 1 else range(len(canvas)):
            # 1) multi-head attention. Every position reads every key: there is no causal mask,
            # which is what lets a masked position read the letters after it too
            q = linear(x_norm[pos], state_dict[f'layer{i}.attn_wq'])
            x_attn = []
            for h in range(n_head):  # each head reads its own head_dim slice of q, k and v
                hs = slice(h * head_dim, (h + 1) * head_dim)
                x_attn.extend(attention(q[hs], [k[hs] for k in keys], [v[hs] for v in values]))
            x_attn = linear(x_attn, state_dict[f'layer{i}.attn_wo'])
            x_attn = [a + b for a, b in zip(x_attn, x[pos])]  # the residual connection
            # 2) MLP: expand, ReLU, project back, and the residual connection
            hidden = relu(linear(rmsnorm(x_attn), state_dict[f'layer{i}.mlp_fc1']))
            x_mlp = linear(hidden, state_dict[f'layer{i}.mlp_fc2'])
            x_next[pos] = [a + b for a, b in zip(x_mlp, x_attn)]
        x = x_next
    # the output layer is wte itself (weight tying), the letters' rows only: a hidden position
    # always holds a letter, never MASK or END
    letters = state_dict['wte'][:len(tok.chars)]
    return [None if xi is None else linear(xi, letters) for xi in x]

# Let there be noise: hide each letter behind MASK with probability t
def noise_level(rng):
    """t, log-uniform in [t_min, 1]: as often in [0.2, 0.45] as in [0.45, 1]."""
    return math.exp(rng.uniform(math.log(t_min), 0.0))

def corrupt(clean, t, tok, rng):
    """Each letter becomes MASK with probability t; at least one does, so every name teaches
    something. END always stays: the length is known before any letter is."""
    noisy = [tok.MASK if rng.random() < t else token for token in clean[:-1]]
    if tok.MASK not in noisy:
        noisy[rng.randrange(len(noisy))] = tok.MASK
    return noisy + [tok.END]

def masked_loss(logits, clean, masked):
    """The mean cross-entropy at the masked positions only: the visible letters teach nothing."""
    return total([cross_entropy(logits[pos], clean[pos]) for pos in masked]) / len(masked)

def name_gradient(clean, noisy, tok, state_dict):
    """One corrupted name's loss and gradient (in parameters() order), every .grad left at 0."""
    masked = [pos for pos, token in enumerate(noisy) if token == tok.MASK]
    loss = masked_loss(mask_predictor(noisy, tok, state_dict, masked), clean, masked)
    loss.backward()
    params = parameters(state_dict)
    grad = [p.grad for p in params]
    for p in params:
        p.grad = 0.0
    return loss.data, grad

# Let there be Adam, microgpt's, the gradient handed in as a list
class Adam:
    def __init__(self, params):
        self.params, self.step_count = params, 0
        self.m = [0.0] * len(params)  # running mean of the gradient
        self.v = [0.0] * len(params)  # running mean of the squared gradient

    def step(self, grad, lr_t):
        """One update from grad, a gradient per parameter, with bias-corrected moments."""
        if not all(map(math.isfinite, grad)):  # a nan or an inf would spread to every weight
            raise FloatingPointError(f"the gradient is not finite at step {self.step_count + 1}: "
                                     f"the training diverged")
        self.step_count += 1
        m_correction, v_correction = 1 - beta1 ** self.step_count, 1 - beta2 ** self.step_count
        for i, (p, g) in enumerate(zip(self.params, grad)):
            self.m[i] = beta1 * self.m[i] + (1 - beta1) * g
            self.v[i] = beta2 * self.v[i] + (1 - beta2) * g * g
            m_hat, v_hat = self.m[i] / m_correction, self.v[i] / v_correction
            p.data -= lr_t * m_hat / (v_hat ** 0.5 + eps_adam)

# Let there be training: each step, a batch of names hidden at noise levels of their own
def train(state_dict, names, tok, length_probs, rng, n_steps=num_steps, batch_size=batch_size,
          map=map):
    """Adam on the mean loss of batch_size names a step, in order, round and round; returns each
    step's loss. map: the built-in, or a pool's (the same results). At steps 1, 100, 200... and
    the last: progress, and 4 names from sample() (below), drawn alike: only the model changes."""
    optimizer = Adam(parameters(state_dict))
    losses, start = [], time.time()
    for step in range(1, n_steps + 1):
        first = (step - 1) * batch_size
        cleans = [tok.encode(names[(first + i) % len(names)]) for i in range(batch_size)]
        noisies = [corrupt(clean, noise_level(rng), tok, rng) for clean in cleans]
        results = list(map(name_gradient, cleans, noisies, repeat(tok), repeat(state_dict)))
        # the mean of the names' losses, so the mean of their gradients, added in batch order
        loss = sum(name_loss for name_loss, _ in results) / batch_size
        grad = [sum(name_grads) / batch_size for name_grads in zip(*(g for _, g in results))]
        optimizer.step(grad, learning_rate * (1 - (step - 1) / n_steps))  # lr falls linearly
        losses.append(loss)
        if step == 1 or step % 100 == 0 or step == n_steps:
            elapsed, recent = time.time() - start, losses[-100:]
            weights, preview_rng = as_floats(state_dict), random.Random(0)
            names_now = [sample(tok, weights, length_probs, preview_rng)[0] for _ in range(4)]
            print(f"step {step:5d} / {n_steps} | loss {loss:.4f}, last {len(recent):3d} "
                  f"{sum(recent) / len(recent):.4f} | {elapsed:5.1f}s, "
                  f"{elapsed / step * (n_steps - step):5.1f}s left | {' '.join(names_now)}",
                  flush=True)
    return losses

# Let there be evaluation: a bound on -log p(name) for names never trained on. Call c_k the
# mean cross-entropy at k random hidden letters of the name. The 'random' sampler draws L, then
# reveals one letter a step (at 22 denoising steps or more) in a random order s, at temperature
# 1: p(name) = p(L) E_s[prod_i p(letter s_i | those before)]. -log is convex (Jensen), so
# -log p(name) <= -log p(L) + E_s[sum_i -log p(letter s_i | ...)]. With k letters hidden, the
# next is any of the k alike, at expected cost c_k: -log p(name) <= -log p(L) + c_1 + ... + c_L
def random_order_masks(name, rng):
    """One random order of revealing the letters: masks[k - 1] hides k, for the estimate of c_k."""
    order = rng.sample(range(len(name)), len(name))  # order[0] is revealed last
    return [sorted(order[:k]) for k in range(1, len(name) + 1)]

def hidden_loss(clean, masked, tok, weights):  # the loss with the masked positions hidden
    noisy = [tok.MASK if pos in masked else token for pos, token in enumerate(clean)]
    return masked_loss(mask_predictor(noisy, tok, weights, masked), clean, masked)

def nelbo(name, masks, tok, weights, length_probs):
    """-log p(L) plus, for each k, the mean loss at the k letters of masks[k - 1]: one number, one
    order's estimate of the name's NELBO in nats, whose mean over orders bounds -log p(name)."""
    letters_nats = sum(hidden_loss(tok.encode(name), masked, tok, weights) for masked in masks)
    return -math.log(length_probs[len(name)]) + letters_nats

def heldout_nelbo(names, tok, weights, length_probs, rng, map=map):
    """The names' NELBO per character (L letters and END), one order each; and each name's."""
    masks = [random_order_masks(name, rng) for name in names]
    bounds = list(map(nelbo, names, masks, repeat(tok), repeat(weights), repeat(length_probs)))
    return sum(bounds) / sum(len(name) + 1 for name in names), bounds

# Let there be sampling: draw a length, then unmask its letters, surest first
def cosine_noise(step, n_steps):  # the noise level t after `step` of n_steps: from 1 down to 0
    return math.cos(math.pi / 2 * step / n_steps)

def confidence(probs, token):  # how sure the model is of the letter it drew: its log-probability
    return math.log(probs[token])

def sample(tok, weights, length_probs, rng, n_steps=denoise_steps, sampler='confidence',
           template=None):
    """A new name and its trace, (step, t after it, temperature, canvas) at the start and after
    each step that changed the canvas. template: letters and MASKs, and whether more may follow."""
    if template is None:  # draw a length L, and lay out L MASKs and END
        canvas = [tok.MASK] * draw_length(length_probs, rng) + [tok.END]
    else:
        tokens, open_ended = template
        n_more = draw_length(length_probs, rng, len(tokens)) - len(tokens) if open_ended else 0
        canvas = tokens + [tok.MASK] * n_more + [tok.END]
    n_hidden = canvas.count(tok.MASK)
    trace = [(0, 1.0, None, list(canvas))]
    for step in range(1, n_steps + 1):
        # t falls from 1 to 0 along a cosine; after this step round(n_hidden * t_next) stay hidden
        t, t_next = cosine_noise(step - 1, n_steps), cosine_noise(step, n_steps)
        masked = [pos for pos, token in enumerate(canvas) if token == tok.MASK]
        n_to_reveal = len(masked) - round(n_hidden * t_next)
        if n_to_reveal == 0:
            continue  # nothing to reveal at this step: no need to run the model
        temperature = 1.0 if sampler == 'random' else (
            temperature_end + (temperature_start - temperature_end) * t)
        logits = mask_predictor(canvas, tok, weights, masked)
        drawn, priority = {}, {}
        for pos in masked:  # a letter drawn for every hidden position...
            probs = softmax([z / temperature for z in logits[pos]])
            drawn[pos] = rng.choices(range(len(probs)), weights=probs)[0]
            gumbel = -math.log(rng.expovariate(1.0) or 1e-300)  # Gumbel(0, 1), never log(0)
            if sampler == 'random':
                priority[pos] = gumbel  # ...ranked in random order
            else:  # ...or by how sure the model is of it, stirred by Gumbel noise while t is
                # high (MaskGIT): letters the model rarely favours get their turn too
                priority[pos] = confidence(probs, drawn[pos]) + choice_noise * t * gumbel
        # the n_to_reveal highest are kept for good; the rest stay hidden, their draws dropped
        for pos in sorted(masked, key=priority.get, reverse=True)[:n_to_reveal]:
            canvas[pos] = drawn[pos]
        trace.append((step, t_next, temperature, list(canvas)))
    return tok.decode(canvas), trace

# Let there be the program: names, model, training, NELBO, samples; the workshop does the rest
def main(argv=None):
    with stop_report():  # a user's error, Ctrl-C or kill: one line, and an exit status
        args = parse_args(argv)  # the flags, checked; their defaults are the settings above
        lines, too_long, names_sha256 = read_names(args.input)  # lower-cased, every line checked
        names = list(dict.fromkeys(lines))  # each name once: held out means never trained on
        rng = random.Random(args.seed)  # the split, the weights, the noise, the samples
        train_names, heldout_names = split(names, rng)
        tok = Tokenizer(names)
        length_probs = length_model(train_names)
        state_dict = init_params(tok.vocab_size, rng)
        template = check_flags(args, tok)  # a bad --save, --score or --template fails now
        print_counts(lines, names, too_long, train_names, heldout_names, tok, state_dict)
        with worker_map(args.workers, tok, state_dict) as map_:  # the built-in map, or a pool's
            if args.load:  # the weights, lengths and generator as a --save left them
                length_probs = load_model(args, tok, names_sha256, state_dict, rng)
            else:
                train(state_dict, train_names, tok, length_probs, rng, args.num_steps,
                      args.batch_size, map_)
            if args.save:
                save_model(args, tok, state_dict, length_probs, rng, names_sha256)
            weights = as_floats(state_dict)  # plain floats from here on: no graph to build
            if args.score:  # how likely each name is, instead of the NELBO and the samples
                return print_scores(args.score, tok, weights, length_probs)
            eval_names = heldout_names[:args.eval_names]  # none, if fewer than 10 names
            if eval_names:  # with a generator of its own, so that the samples stay the same
                per_char, bounds = heldout_nelbo(eval_names, tok, weights, length_probs,
                                                 random.Random(args.seed + 1), map_)
                print_nelbo(per_char, bounds, eval_names)
        samples = (sample(tok, weights, length_probs, rng, args.denoise_steps, args.sampler,
                          template) for _ in range(args.num_samples))  # drawn as printed
        print_samples(samples, args, train_names, names, tok)

# ---------------------------------------------------------------------------------------------
# That is the whole algorithm, and the program that runs it. The rest of the file is the
# workshop: the helpers main() calls by name, to check, share, save, stop and print.
import argparse            # the command line
import concurrent.futures  # a pool of worker processes that share out each step's names
import contextlib          # contextlib.contextmanager: a stop report and a pool that always end
import gc                  # gc.disable: CPython's cycle collector, paused while graphs are built
import hashlib             # hashlib.sha256: ties a saved model to its names file
import itertools           # itertools.combinations: every set of hidden letters, for --score
import json                # a saved model is one JSON file
import multiprocessing     # parent_process(): a worker ends when the main process has gone
import os                  # paths, and os.replace: a file is written whole or not at all
import reprlib             # reprlib.repr: a field of a saved model, cut short in a message
import signal              # Ctrl-C and SIGTERM are the main process's to handle
import sys                 # sys.stderr, sys.exit, sys.implementation
import threading           # a thread in each worker that watches the main process; a backstop
import traceback           # traceback.walk_tb: where a stop found the run

class UserError(Exception): pass  # something the user can fix: one line, exit status 1
class Terminated(BaseException): pass  # SIGTERM: a stop, as Ctrl-C's KeyboardInterrupt is
HERE = os.path.dirname(os.path.abspath(__file__))  # where input.txt is
MAX_INPUT_MIB, MAX_BATCH, MAX_WEIGHT = 64, 1000, 1000.0  # far above what makes sense here
def count(n, noun):  # '1 name', '2 names'
    return f"{n:,} {noun}{'' if n == 1 else 's'}"

# What the program prints: the counts, the NELBO, the samples, the scores
def print_counts(lines, names, too_long, train_names, heldout_names, tok, state_dict):
    print(f"names: {len(names):,} ({count(len(lines) - len(names), 'repeated line')} dropped): "
          f"{len(train_names):,} for training, {len(heldout_names):,} held out")
    if too_long:
        print(f"skipped {count(too_long, 'name')} longer than {max_letters} characters")
    print(f"vocabulary: {tok.vocab_size} tokens ({len(tok.chars)} characters, MASK and END)")
    print(f"parameters: {len(parameters(state_dict)):,}")

def print_nelbo(per_char, bounds, names):  # the ± is a standard error, by the delta method
    n_chars = [len(name) + 1 for name in names]
    squares = sum((bound - per_char * n) ** 2 for bound, n in zip(bounds, n_chars))
    stderr = math.sqrt(squares / max(1, len(names) - 1) / len(names)) / (sum(n_chars) / len(names))
    print(f"held-out NELBO: {per_char:.3f}" + (f" ± {stderr:.3f}" if len(names) > 1 else "") +
          f" nats/char on {count(len(names), 'name')} never trained on")

def print_samples(samples, args, train_names, names, tok):  # marked if real; --trace: the first
    if not args.num_samples:
        return
    trained_on = set(train_names[:args.num_steps * args.batch_size])  # read in order
    print(f"--- {count(args.num_samples, 'sample')} ({args.sampler} sampler, "
          f"{args.denoise_steps} denoising steps) ---")
    marks, traces, real_names = [], [], set(names)
    for n, (name, trace) in enumerate(samples, 1):
        traces.append(trace)
        marks.append('trained on' if name in trained_on else
                     'real, never trained on' if name in real_names else '')
        print(f"sample {n:2d}: {name}" + (f"  ({marks[-1]})" if marks[-1] else ''))
    print(f"{marks.count('')} new, {marks.count('trained on')} the model was trained on, "
          f"{count(marks.count('real, never trained on'), 'real name')} it never saw")
    if args.trace:
        print("--- how sample 1 emerged ('_' is MASK, '.' is END; t after each step) ---\n"
              " step      t  temp  canvas")
        for step, t, temperature, canvas in traces[0]:
            temp = '    -' if temperature is None else f"{temperature:5.2f}"
            print(f"{step:5d}  {t:.3f} {temp}  {tok.decode(canvas)}.")

score_sets = 200  # the most sets of k hidden letters score() averages over, for each k
def score(name, tok, weights, length_probs):
    """The NELBO over every order: -log p(L), and c_1 + ... + c_L, c_k over all sets of k hidden."""
    clean, rng = tok.encode(name), random.Random(name)  # a name's score depends on nothing else
    letters_nats = 0.0
    for k in range(1, len(name) + 1):
        hidden_sets = list(itertools.combinations(range(len(name)), k))
        hidden_sets = rng.sample(hidden_sets, min(score_sets, len(hidden_sets)))  # all, or some
        letters_nats += sum(hidden_loss(clean, masked, tok, weights)
                            for masked in hidden_sets) / len(hidden_sets)
    return -math.log(length_probs[len(name)]), letters_nats

def print_scores(names, tok, weights, length_probs):  # --score
    print("--- -log p(name) <= the length's nats + the letters', over every order ---")
    for name in names:
        length_nats, letters_nats = score(name, tok, weights, length_probs)
        nats = length_nats + letters_nats
        print(f"{name:>15}: {nats:6.2f} = {length_nats:5.2f} + {letters_nats:5.2f}, "
              f"{nats / (len(name) + 1):.2f} per character")

# Stops: one line for an error the user can fix, and for Ctrl-C or SIGTERM however many come
saved_to = []  # where save_model wrote the model, for that line
STAGES = {'load_model': 'while loading', 'save_model': 'while saving',
          'heldout_nelbo': 'during the held-out evaluation', 'print_scores': 'while scoring',
          'sample': 'while sampling'}

def stage(trace_back):  # the outermost stage of the program that the stop found running
    for frame, _ in traceback.walk_tb(trace_back):
        name, local = frame.f_code.co_name, frame.f_locals
        if name == 'train':
            return f" at training step {local.get('step', 0)} of {local['n_steps']}"
        if name in STAGES:
            return ' ' + STAGES[name]
    return ''

@contextlib.contextmanager
def stop_report():
    """One line, then exit 1 for a user's error, 130 or 143 for the first Ctrl-C or SIGTERM."""
    def stop(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    if handlers[0] is signal.default_int_handler:  # a run started ignoring Ctrl-C goes on so
        signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    saved_to.clear()
    try:
        yield
    except (UserError, FloatingPointError) as err:
        saved = f"; the model was saved to {saved_to[0]}" if saved_to else ""
        print(f"microdiffusion.py: error: {err}{saved}", file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, Terminated) as err:  # the signals stay ignored until the exit
        how, code = ('terminated', 143) if isinstance(err, Terminated) else ('interrupted', 130)
        wrote = f"the model was saved to {saved_to[0]}" if saved_to else "nothing was written"
        print(f"microdiffusion.py: {how}{stage(err.__traceback__)}; {wrote}", file=sys.stderr)
        backstop = threading.Timer(3, os._exit, [code])
        backstop.daemon = True  # should the exit wait on a worker that is gone, end it anyway
        backstop.start()
        sys.exit(code)
    except BrokenPipeError:  # the reader left early (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    signal.signal(signal.SIGINT, handlers[0])
    signal.signal(signal.SIGTERM, handlers[1])

# The command line
class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage and then the error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

def parse_args(argv=None):
    parser = OneLineParser(prog='microdiffusion.py', description=__doc__.split('\n')[1],
                           allow_abbrev=False)  # flags in full, as `given` below reads them
    add, cores = parser.add_argument, os.cpu_count() or 1
    def number(flag, default, low=1, high=10 ** 9, help='default %(default)s'):
        def whole_number(text):  # the flag's argparse type: a whole number from low to high
            if not text.strip().lstrip('-').isdigit() or not low <= int(text) <= high:
                raise argparse.ArgumentTypeError(
                    f"not a whole number from {low} to {high:,}: {text!r}")
            return int(text)
        add(flag, metavar='N', type=whole_number, default=default, help=help)
    add('--input', metavar='PATH', default=os.path.join(HERE, 'input.txt'),
        help='one name a line; default: input.txt, beside this file')
    number('--num-steps', num_steps)
    number('--batch-size', batch_size, high=MAX_BATCH)
    number('--workers', 1 if sys.implementation.name == 'pypy' else cores, high=cores,
           help='default: one per core, the most that helps; PyPy: 1')
    number('--seed', seed, -10 ** 9)
    number('--eval-names', n_heldout, 0, help='held-out names for the NELBO (default %(default)s)')
    number('--num-samples', num_samples, 0)
    number('--denoise-steps', denoise_steps)
    add('--sampler', choices=SAMPLERS, default='confidence', help='default confidence')
    add('--template', metavar='T', help="e.g. ma*: '_' a letter, '*' any more")
    add('--trace', action='store_true', help='print how the first name emerged, step by step')
    add('--score', metavar='NAME', nargs='+', help='print bounds on -log p(NAME), not samples')
    add('--save', metavar='PATH', help='save the model after training (a JSON file)')
    add('--load', metavar='PATH', help='load a saved model instead of training')
    args = parser.parse_args(argv)
    given = {word.split('=')[0] for word in (sys.argv[1:] if argv is None else argv)}
    for flag, does, others in (('--load', 'does not train', '--num-steps --batch-size --save'),
                               ('--score', 'prints scores, not samples', '--eval-names --trace '
                                '--num-samples --denoise-steps --sampler --template')):
        unused = [other for other in others.split() if other in given]
        if flag in given and unused:
            parser.error(f"{flag} {does}: leave out {' and '.join(unused)}")
    for flag in ('input', 'save', 'load'):
        if getattr(args, flag) == '':
            parser.error(f"--{flag} needs a path, not ''")
    return args

# The names file, and the flags that need its vocabulary, all checked
def read_names(path):
    """The names, lower-cased; how many were too long to keep; the file's SHA-256."""
    try:
        with open(path, 'rb') as f:
            raw = f.read(MAX_INPUT_MIB * 2 ** 20 + 1)  # not all of /dev/zero
        if len(raw) > MAX_INPUT_MIB * 2 ** 20:
            raise UserError(f"{path} is over {MAX_INPUT_MIB} MiB: not a list of names")
        text = raw.decode('utf-8-sig')  # -sig: a byte-order mark (Windows) is dropped
    except OSError as err:  # missing, a directory, not allowed...
        if path == os.path.join(HERE, 'input.txt') and isinstance(err, FileNotFoundError):
            raise UserError(f"{path} is missing: git checkout input.txt, or pass --input") from None
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (bad byte at offset {err.start})") from None
    names, too_long = [], 0
    for line_number, line in enumerate(text.splitlines(), 1):
        name = line.strip().lower()
        odd = [ch for ch in name if ch in '_*.' or not ch.isprintable()]  # '_*.': marks for MASK,
        if odd:  # more letters and END in templates and traces; others: tabs, odd spaces, controls
            raise UserError(f"{path} line {line_number} holds {odd[0]!r} (U+{ord(odd[0]):04X}), "
                            f"which a name cannot hold: only printing characters, except '_*.'")
        if len(name) > max_letters:
            too_long += 1
        elif name:
            names.append(name)
    if not names:
        raise UserError(f"{path} contains no names of 1 to {max_letters} characters, one a line")
    return names, too_long, hashlib.sha256(raw).hexdigest()

def check_flags(args, tok):
    """Checks --save, --score and --template; returns the template as sample() takes it, or None."""
    if args.save:
        check_save_path(args.save)
    for i, name in enumerate(args.score or []):
        args.score[i] = name = name.strip().lower()
        if not 0 < len(name) <= max_letters or set(name) - set(tok.chars):
            raise UserError(f"cannot score {name!r}: a name is 1 to {max_letters} of the "
                            f"letters {''.join(tok.chars)}")
    if args.template is None:
        return None
    open_ended = args.template.endswith('*')
    body = (args.template[:-1] if open_ended else args.template).lower()
    if not 0 < len(body) <= max_letters or any(ch != '_' and ch not in tok.stoi for ch in body):
        raise UserError(f"the template {args.template!r} is not 1 to {max_letters} of '_' and "
                        f"the letters {''.join(tok.chars)}, then an optional '*'")
    return [tok.MASK if ch == '_' else tok.stoi[ch] for ch in body], open_ended

# Worker processes: each step's names, and the held-out names, shared among the cores
class TheirStateDict: pass  # stands, in a task, for the worker's own state dict

def start_worker(vocab_size):  # once in each worker: a model whose weights every task sets
    global worker_state_dict
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle;
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # SIGTERM ends a worker, as the pool expects
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # see below
    threading.Thread(target=exit_with_parent, daemon=True).start()  # however the main ends
    if sys.implementation.name == 'cpython':
        gc.disable()  # as in the main process
    worker_state_dict = init_params(vocab_size, random.Random(0))

def exit_with_parent():
    multiprocessing.parent_process().join()  # returns once the main process has ended
    os._exit(1)

def run_task(fn, param_data, items):  # in a worker: fn on each item, at the main's weights
    for p, number in zip(parameters(worker_state_dict), param_data):
        p.data = number
    return [fn(*(worker_state_dict if a is TheirStateDict else a for a in item)) for item in items]

@contextlib.contextmanager
def stops_held():  # Ctrl-C and SIGTERM wait, not lost, until the pool is in a state to stop
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})

@contextlib.contextmanager
def worker_map(n_workers, tok, state_dict):
    """The run's map: the built-in, or with 2 workers or more, theirs."""
    def pool_map(fn, *iterables):  # the built-in's results, in order, from tasks of <= 20 items
        items = [tuple(TheirStateDict if arg is state_dict else arg for arg in item)
                 for item in zip(*iterables)]  # the state dict goes as its weights, below
        if len(items) < 2:  # not worth sending
            return list(map(fn, *iterables))
        size = min(20, -(-len(items) // n_workers))
        param_data = [p.data for p in parameters(state_dict)]
        try:
            with stops_held():  # never half-way through handing out a task or starting a worker
                futures = [pool.submit(run_task, fn, param_data, items[i:i + size])
                           for i in range(0, len(items), size)]
            return [answer for future in futures for answer in future.result()]
        except concurrent.futures.BrokenExecutor:
            raise UserError("a worker process died; run again, or pass --workers 1") from None
        except Exception as err:  # raised in a worker (or in starting one), and passed on
            raise UserError(f"a worker process failed: {type(err).__name__}: {err}") from None
    collecting, pool = gc.isenabled(), None
    if sys.implementation.name == 'cpython':
        gc.disable()  # meanwhile: no graph holds a cycle, so reference counting frees them all
    try:
        try:  # with 2 workers or more, a pool: they start with its first task
            if n_workers > 1:
                pool = concurrent.futures.ProcessPoolExecutor(
                    n_workers, initializer=start_worker, initargs=(tok.vocab_size,))
        except (OSError, ImportError, NotImplementedError) as err:
            print(f"microdiffusion.py: note: cannot start worker processes ({err}); running in "
                  f"one process, with the same result", file=sys.stderr)
        yield pool_map if pool else map
    finally:  # after a stop or an error, too: the tasks under way end, the others are dropped
        if pool:
            pool.shutdown(cancel_futures=True)
        if collecting:
            gc.enable()

# Checkpoints: train once with --save, sample as often as you like with --load
MODEL_FORMAT, MODEL_VERSION = 'microdiffusion-model', 1
HYPERPARAMETERS = {'n_layer': n_layer, 'n_embd': n_embd, 'block_size': block_size,
                   'n_head': n_head, 'mlp_hidden': mlp_hidden}

def beside(path):  # the file save_model writes first, in the same folder, then renames
    folder, name = os.path.split(path)
    return os.path.join(folder, f'.{name}.{os.getpid()}.tmp')

def check_save_path(path):  # fails now, not after training; --save replaces only a saved model
    try:
        with open(path, encoding='utf-8') as f:
            a_model = json.load(f).get('format') == MODEL_FORMAT
    except (OSError, ValueError, AttributeError):  # missing, unreadable, not JSON, or not an object
        a_model = not os.path.exists(path)
    if not a_model:
        raise UserError(f"cannot save the model as {path}: it is there, and not a saved model")
    try:  # the file save_model writes first, its name longer than path's: can it be made?
        open(beside(path), 'x').close()
        os.unlink(beside(path))
    except OSError as err:
        raise UserError(f"cannot save the model as {path}: {err.strerror or err}") from None

def save_model(args, tok, state_dict, length_probs, rng, names_sha256):  # one JSON file
    model = {'format': MODEL_FORMAT, 'version': MODEL_VERSION, 'vocabulary': ''.join(tok.chars),
             'hyperparameters': HYPERPARAMETERS, 'names_sha256': names_sha256, 'seed': args.seed,
             'num_steps': args.num_steps, 'batch_size': args.batch_size,
             'learning_rate': learning_rate, 'length_probs': length_probs,
             'state_dict': as_floats(state_dict), 'rng_state': rng.getstate()}
    try:  # written beside its path, then renamed onto it: the file is whole, or as it was
        with open(beside(args.save), 'x') as f:
            json.dump(model, f)
        os.replace(beside(args.save), args.save)
    except OSError as err:
        raise UserError(f"cannot save the model as {args.save}: {err.strerror or err}") from None
    finally:  # renamed, or failed or stopped part way: nothing is left beside it
        if os.path.exists(beside(args.save)):
            os.unlink(beside(args.save))
    saved_to.append(args.save)
    print(f"saved the model to {args.save} ({os.path.getsize(args.save) / 1024:,.0f} KiB)")

def a_number(x, low, high, kind=(int, float)):  # from JSON, and not true, false, nan or inf
    return isinstance(x, kind) and not isinstance(x, bool) and low <= x <= high
def load_model(args, tok, names_sha256, state_dict, rng):
    """Checks args.load; sets state_dict, rng and args as training left them; returns p(L)."""
    def bad(why):
        return UserError(f"{args.load} is not a usable model: {why}")
    try:
        with open(args.load, encoding='utf-8') as f:
            model = json.load(f)
    except OSError as err:
        raise UserError(f"cannot read {args.load}: {err.strerror or err}") from None
    except ValueError as err:  # not JSON, cut short, or not UTF-8
        raise bad(f"not complete JSON ({err})") from None
    if not isinstance(model, dict) or model.get('format') != MODEL_FORMAT:
        raise bad(f"not a {MODEL_FORMAT} file")
    fields = {  # each field: does it fit, and what it must be (the same names: the same split)
        'names_sha256': (lambda x: x == names_sha256, "this run's: pass --input with its names"),
        'seed': (lambda x: x == args.seed, f"{args.seed}: pass --seed {model.get('seed')}"),
        'version': (lambda x: x == MODEL_VERSION, MODEL_VERSION),
        'hyperparameters': (lambda x: x == HYPERPARAMETERS, HYPERPARAMETERS),  # this file's
        'num_steps': (lambda x: a_number(x, 1, math.inf, int), 'a whole number from 1'),
        'batch_size': (lambda x: a_number(x, 1, MAX_BATCH, int), f'from 1 to {MAX_BATCH}'),
        'length_probs': (lambda x: isinstance(x, list) and len(x) == max_letters + 1 and
                         x[0] == 0 and all(a_number(p, 1e-12, 1) for p in x[1:]) and
                         abs(sum(x) - 1) < 1e-9, f'p(L) for L = 0..{max_letters}, p(0) = 0, '
                         f'the others above 0, summing to 1'),
        'state_dict': (lambda x: isinstance(x, dict), 'the weight matrices by name')}
    for key, (fits, what) in fields.items():
        if not fits(model.get(key)):
            raise bad(f"its {key}, {reprlib.repr(model.get(key))}, should be {what}")
    for name, matrix in state_dict.items():
        rows = model['state_dict'].get(name)
        if not isinstance(rows, list) or len(rows) != len(matrix) or not all(
                isinstance(row, list) and len(row) == len(matrix[0]) for row in rows):
            raise bad(f"its {name} is missing, or not {len(matrix)} x {len(matrix[0])}")
        for row, saved_row in zip(matrix, rows):
            for p, w in zip(row, saved_row):
                if not a_number(w, -MAX_WEIGHT, MAX_WEIGHT):
                    raise bad(f"its {name} holds {w!r}, not a number within ±{MAX_WEIGHT:g}")
                p.data = float(w)
    try:  # the generator as training left it: the same names follow
        version, internal_state, gauss_next = model['rng_state']
        rng.setstate((version, tuple(internal_state), gauss_next))
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        raise bad(f"its rng_state does not load ({type(err).__name__}: {err})") from None
    args.num_steps, args.batch_size = model['num_steps'], model['batch_size']
    print(f"loaded {args.load}: trained {args.num_steps:,} steps of {args.batch_size} names")
    return [float(p) for p in model['length_probs']]

if __name__ == '__main__':
    main()
