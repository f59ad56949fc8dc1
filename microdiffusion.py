"""
microdiffusion: a masked diffusion language model in one file of pure Python.

It learns from a list of human names and makes new ones the diffusion way: draw how long the
name will be, lay out that many [MASK] tokens and an END, then unmask them step by step, each
step guided by a transformer that predicts every hidden letter from the letters on both sides.
The diffusion companion of Karpathy's microgpt, as plain on purpose: a scalar autograd engine,
a 2-layer model of 6,848 parameters, a length counted rather than predicted, no dependencies.
The algorithm comes first; after it, the workshop that runs it.
"""
import math      # math.exp, math.log, math.cos, math.sqrt, math.pi
import operator  # operator.mul: a dot product of plain floats
import random    # random.Random: seeded generators for data order, weights, noise and samples

# Let there be data: a list of names, one per line of input.txt (the workshop reads and checks
# it); 1,000 (or a tenth, if fewer) held out, to measure the model on names it never trained on
def split(names, rng):
    names = list(names)
    rng.shuffle(names)
    n_heldout = min(1000, len(names) // 10)
    return names[n_heldout:], names[:n_heldout]

# Let there be a tokenizer: one id per character, then MASK and END
block_size = 16  # the longest canvas: a name of up to 15 letters, then END
max_letters = block_size - 1

class Tokenizer:
    """The characters of the names, sorted, are the letters: ids 0..n-1. MASK (id n) means "not
    revealed yet": diffusion starts from a row of them. END (id n+1) closes every name and is
    never hidden, so the model always knows how long the name is."""

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
    """p(L) for L = 0..max_letters: how often the names have L letters, add-one smoothed over
    1..max_letters so that every length the canvas holds stays possible. p(0) = 0."""
    counts = [0] + [1] * max_letters
    for name in names:
        counts[len(name)] += 1
    return [c / sum(counts) for c in counts]

def draw_length(length_probs, rng, min_letters=1):
    """A length from p(L), restricted to L >= min_letters (the letters a template fixes)."""
    return rng.choices(range(min_letters, len(length_probs)), weights=length_probs[min_letters:])[0]

# Let there be autograd: a scalar Value that remembers how it was made
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
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0))

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        return Value(self.data * other.data, (self, other), (other.data, self.data))

    def __pow__(self, exponent):  # exponent is a plain number
        return Value(self.data ** exponent, (self,), (exponent * self.data ** (exponent - 1),))

    def exp(self):
        e = math.exp(self.data)
        return Value(e, (self,), (e,))

    def log(self):
        return Value(math.log(self.data), (self,), (1.0 / self.data,))

    def relu(self):
        return Value(max(0.0, self.data), (self,), (float(self.data > 0),))

    def __neg__(self): return self * -1                        # -self
    def __radd__(self, other): return self + other             # other + self
    def __sub__(self, other): return self + (-other)           # self - other
    def __rsub__(self, other): return other + (-self)          # other - self
    def __rmul__(self, other): return self * other             # other * self
    def __truediv__(self, other): return self * other ** -1    # self / other
    def __rtruediv__(self, other): return other * self ** -1   # other / self

    # two n-ary nodes, for speed: a sum or a dot product of n Values is one node, not n-1 or 2n-1
    @staticmethod
    def sum(values):  # d(sum)/d(x_i) = 1
        values = tuple(values)
        return Value(sum(x.data for x in values), values, (1.0,) * len(values))

    @staticmethod
    def dot(ws, xs):  # d(w.x)/d(w_i) = x_i and d(w.x)/d(x_i) = w_i
        w_data, x_data = [w.data for w in ws], [x.data for x in xs]
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

# Let there be hyperparameters
n_layer = 2            # transformer blocks
n_embd = 16            # width of every token's vector
n_head = 4             # attention heads
head_dim = n_embd // n_head
mlp_hidden = 4 * n_embd
init_std = 0.08        # weights start as N(0, 0.08^2)
t_min = 0.2            # training noise levels t are log-uniform in [t_min, 1]
batch_size = 8         # names per training step, their gradients averaged
num_steps = 1075       # training steps
learning_rate = 0.014  # Adam's, decaying linearly towards 0
beta1, beta2, eps_adam = 0.85, 0.99, 1e-8

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

def as_floats(state_dict):  # the weights as plain floats: the model runs without a graph
    return {name: [[p.data for p in row] for row in matrix] for name, matrix in state_dict.items()}

# Let there be building blocks. Each takes Values while training (a graph is built, for
# backward) or plain floats while sampling and evaluating (no graph: 4.5 times faster). The
# formulas are the same; only these five helpers and relu tell the two apart
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

def linear(x, w):  # y = W x, one dot product per output row
    return [dot(w_row, x) for w_row in w]

def relu(x):  # max(0, x_i) for each element of the vector x
    return [xi.relu() if isinstance(xi, Value) else max(0.0, xi) for xi in x]

def softmax(logits):
    top = max(data(z) for z in logits)  # exp of a large logit overflows; a shift changes nothing
    exps = [exp(z - top) for z in logits]
    inverse_total = 1 / total(exps)
    return [e * inverse_total for e in exps]

def rmsnorm(x):  # x / sqrt(mean(x^2) + 1e-5): every vector comes out with a root mean square of 1
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

# Let there be the model: a bidirectional transformer that predicts every position at once
def mask_predictor(canvas, tok, state_dict, positions=None):
    """Logits over the letters at the positions asked for (default: all), None at the others."""
    if positions is None:
        positions = range(len(canvas))
    x = [rmsnorm([te + pe for te, pe in zip(state_dict['wte'][token], state_dict['wpe'][pos])])
         for pos, token in enumerate(canvas)]
    for i in range(n_layer):
        x_norm = [rmsnorm(xi) for xi in x]
        keys = [linear(xi, state_dict[f'layer{i}.attn_wk']) for xi in x_norm]    # a key and a
        values = [linear(xi, state_dict[f'layer{i}.attn_wv']) for xi in x_norm]  # value everywhere
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
            x_attn = linear(x_attn, state_dict[f'layer{i}.attn_wo'])  # the output projection
            x_attn = [a + b for a, b in zip(x_attn, x[pos])]            # and the residual
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
    """t, log-uniform in [t_min, 1]: t in [0.2, 0.45] is as likely as t in [0.45, 1], so lightly
    masked names, where most letters are visible, are seen as often as heavily masked ones."""
    return math.exp(rng.uniform(math.log(t_min), 0.0))

def corrupt(clean, t, tok, rng):
    """Each letter becomes MASK with probability t; at least one does, so every name teaches
    something. END always stays: the length is known before any letter is."""
    noisy = [tok.MASK if rng.random() < t else token for token in clean[:-1]]
    if tok.MASK not in noisy:
        noisy[rng.randrange(len(noisy))] = tok.MASK
    return noisy + [tok.END]

def masked_loss(logits, clean, masked):
    """Mean cross-entropy of the clean letters at the masked positions, and only there: there
    is nothing to learn from predicting the letters the model can see."""
    return total([cross_entropy(logits[pos], clean[pos]) for pos in masked]) / len(masked)

# Let there be Adam
class Adam:
    def __init__(self, params):
        self.params = params
        self.m = [0.0] * len(params)  # running mean of the gradient
        self.v = [0.0] * len(params)  # running mean of the squared gradient
        self.step_count = 0

    def step(self, grad, lr_t):
        """One update from grad, a gradient per parameter, with bias-corrected moments."""
        self.step_count += 1
        m_correction, v_correction = 1 - beta1 ** self.step_count, 1 - beta2 ** self.step_count
        m, v = self.m, self.v
        for i, (p, g) in enumerate(zip(self.params, grad)):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat, v_hat = m[i] / m_correction, v[i] / v_correction
            p.data -= lr_t * m_hat / (v_hat ** 0.5 + eps_adam)

# Let there be training: a few names a step, each hidden at a noise level of its own
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

def train(names, tok, state_dict, num_steps, batch_size, rng, gradients=None, on_step=None):
    """Train in place and return every step's loss. gradients(state_dict, batch) may compute
    each name's (loss, gradient) elsewhere (the workshop's processes, to the same digits);
    on_step(step, loss) is told of every step."""
    params = parameters(state_dict)
    optimizer = Adam(params)
    losses = []
    for step in range(1, num_steps + 1):
        first = (step - 1) * batch_size  # the names are read in order, round and round
        cleans = [tok.encode(names[(first + b) % len(names)]) for b in range(batch_size)]
        batch = [(clean, corrupt(clean, noise_level(rng), tok, rng)) for clean in cleans]
        if gradients:
            results = gradients(state_dict, batch)
        else:
            results = [name_gradient(clean, noisy, tok, state_dict) for clean, noisy in batch]
        # the batch's loss is the mean of its names' losses, so its gradient is the mean of
        # theirs, added up in batch order: the same digits wherever they were computed
        loss = sum(name_loss for name_loss, _ in results) / batch_size
        grad = results[0][1]
        for _, name_grad in results[1:]:
            grad = [a + b for a, b in zip(grad, name_grad)]
        grad = [g / batch_size for g in grad]
        optimizer.step(grad, learning_rate * (1 - (step - 1) / num_steps))  # linear decay
        losses.append(loss)
        if on_step:
            on_step(step, loss)
    return losses

# Let there be evaluation: the negative ELBO of names the model never trained on. Reveal a
# name's L letters one at a time, in random order: while k are hidden, the next is any of the k
# alike, so it costs on average c_k, the mean cross-entropy at k random hidden letters. So
# -log p(name) <= -log p(L) + c_1 + ... + c_L for the 'random' sampler's distribution (random
# order, temperature 1, one letter a step: at 22 denoising steps or more, so at the default 64)
def nelbo(name, masks, tok, weights, length_probs):
    """One name's negative ELBO in nats, an upper bound on -log p(name). masks[k - 1] hides k
    random letters: an unbiased estimate of c_k."""
    clean = tok.encode(name)
    bound = -math.log(length_probs[len(name)])
    for masked in masks:
        noisy = [tok.MASK if pos in masked else token for pos, token in enumerate(clean)]
        bound += masked_loss(mask_predictor(noisy, tok, weights, masked), clean, masked)
    return bound

def heldout_nelbo(names, tok, weights, length_probs, rng, nelbos=None):
    """NELBO per character (a name of L letters counts L + 1, its end too) and its standard
    error. nelbos(weights, length_probs, names, masks) may compute the names' NELBOs elsewhere."""
    masks = [[sorted(rng.sample(range(len(name)), k)) for k in range(1, len(name) + 1)]
             for name in names]
    if nelbos:
        per_name = nelbos(weights, length_probs, names, masks)
    else:
        per_name = [nelbo(name, name_masks, tok, weights, length_probs)
                    for name, name_masks in zip(names, masks)]
    n_chars = [len(name) + 1 for name in names]
    per_char = sum(per_name) / sum(n_chars)
    # the standard error of a ratio of means, by the delta method
    residuals = [bound - per_char * n for bound, n in zip(per_name, n_chars)]
    variance = sum(r * r for r in residuals) / max(1, len(residuals) - 1)
    return per_char, math.sqrt(variance / len(residuals)) / (sum(n_chars) / len(n_chars))

def context_free_nll(train_names, test_names, tok, length_probs):
    """The baseline: the same length model, then one letter distribution per position, counted
    (add-one) on the training names; per character as above."""
    counts = [[1] * len(tok.chars) for _ in range(max_letters)]
    for name in train_names:
        for pos, ch in enumerate(name):
            counts[pos][tok.stoi[ch]] += 1
    nll = 0.0
    for name in test_names:
        nll -= math.log(length_probs[len(name)])
        for pos, ch in enumerate(name):
            nll -= math.log(counts[pos][tok.stoi[ch]] / sum(counts[pos]))
    return nll / sum(len(name) + 1 for name in test_names)

# Let there be sampling: draw a length, then unmask its letters, surest first. A sampler is its
# temperature at t = 1 and at t = 0, and whether the surest letters are kept first (or in random
# order: 'random' draws from the model's own distribution, the one that the NELBO bounds)
SAMPLERS = {'confidence': (1.0, 0.8, True), 'random': (1.0, 1.0, False)}
choice_noise = 1.25  # the scale of the Gumbel noise, times t, added to each confidence

def cosine_noise(step, n_steps):  # the noise level t after `step` of n_steps: from 1 down to 0
    return math.cos(math.pi / 2 * step / n_steps)

def confidence(probs, token):  # how sure the model is of the letter it drew: its log-probability
    return math.log(probs[token])

def sample(tok, weights, length_probs, rng, denoise_steps=64, sampler='confidence',
           template=None):
    """A new name, and its trace: (step, t, temperature, canvas) for every step that changed
    the canvas. template is (tokens, open_ended): tokens holds letters and MASKs; open-ended,
    the length model adds any number of MASKs after them. By default: ([MASK], True)."""
    tokens, open_ended = template or ([tok.MASK], True)
    if open_ended:  # the length comes first
        tokens = tokens + [tok.MASK] * (draw_length(length_probs, rng, len(tokens)) - len(tokens))
    canvas = tokens + [tok.END]
    n_hidden = canvas.count(tok.MASK)
    temperature_at_start, temperature_at_end, surest_first = SAMPLERS[sampler]
    trace = [(0, 1.0, None, list(canvas))]
    for step in range(1, denoise_steps + 1):
        # t falls from 1 to 0 along a cosine; after this step round(n_hidden * t_next) stay hidden
        t, t_next = cosine_noise(step - 1, denoise_steps), cosine_noise(step, denoise_steps)
        masked = [pos for pos, token in enumerate(canvas) if token == tok.MASK]
        n_to_reveal = len(masked) - round(n_hidden * t_next)
        if n_to_reveal == 0:
            continue  # nothing to reveal at this step: no need to run the model
        temperature = temperature_at_end + (temperature_at_start - temperature_at_end) * t
        logits = mask_predictor(canvas, tok, weights, masked)
        drawn, priority = {}, {}
        for pos in masked:  # a letter drawn for every hidden position...
            probs = softmax([z / temperature for z in logits[pos]])
            drawn[pos] = rng.choices(range(len(probs)), weights=probs)[0]
            gumbel = -math.log(rng.expovariate(1.0) or 1e-300)  # Gumbel(0, 1), never log(0)
            if surest_first:  # ...ranked by how sure the model is of it, stirred by Gumbel noise
                # while t is high (MaskGIT): letters the model rarely favours get their turn too
                priority[pos] = confidence(probs, drawn[pos]) + choice_noise * t * gumbel
            else:
                priority[pos] = gumbel  # ...or in random order
        # the n_to_reveal highest are kept for good; the rest go back under MASK
        for pos in sorted(masked, key=priority.get, reverse=True)[:n_to_reveal]:
            canvas[pos] = drawn[pos]
        trace.append((step, t, temperature, list(canvas)))
    return tok.decode(canvas), trace

# ---------------------------------------------------------------------------------------------
# That is the whole algorithm. The rest of the file is the workshop that runs it: reading and
# checking the names, worker processes, checkpoints, the command line, reporting and main().
import argparse            # the command line
import concurrent.futures  # a pool of worker processes that share out each step's names
import gc                  # gc.disable, gc.collect: the collector, paused (see pause_collector)
import hashlib             # hashlib.sha256: checks the download, ties a model to its names file
import json                # a saved model is one JSON file
import multiprocessing     # parent_process(): a worker sees when the main process has gone
import os                  # paths, and os.replace: a file is written whole or not at all
import signal              # Ctrl-C and SIGTERM are the main process's to handle
import sys                 # sys.stdout, sys.stderr, sys.exit, sys.implementation
import tempfile            # a download or a model is first written to a temporary file
import threading           # the thread in each worker that watches the main process
import time                # elapsed and remaining time
import urllib.request      # the download, only when input.txt is missing

DATA_URL = 'https://raw.githubusercontent.com/karpathy/makemore/988aa59/names.txt'
DATA_SHA256 = '0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d'
MODEL_FORMAT, MODEL_VERSION = 'microdiffusion-model', 1

class UserError(Exception): pass  # something the user can fix: main() prints it in one line
class Terminated(BaseException): pass  # SIGTERM: a stop, as Ctrl-C's KeyboardInterrupt is

def pause_collector():  # in each worker; main() pauses its own, under PyPy too
    # no graph holds a reference cycle, so CPython's reference counting frees each one and its
    # cyclic collector only slows training. PyPy has no reference counting: its collector stays
    if sys.implementation.name == 'cpython':
        gc.disable()

# The names: downloaded when missing, every line checked
def write_whole_file(path, write, mode):
    """Write to a new file beside path, then rename it onto path: whole, or not at all."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}-', suffix='.tmp', dir=folder)
    try:
        umask = os.umask(0)  # read it, and put it back: the file gets a new file's usual mode
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise

def download_names(path):  # input.txt, from the pinned address, checked, written whole
    try:
        with urllib.request.urlopen(DATA_URL, timeout=30) as response:
            payload = response.read()
    except OSError as err:  # urllib.error.URLError is an OSError
        reason = getattr(err, 'reason', err)
        raise UserError(f"{path} is missing and could not be downloaded ({reason}); save "
                        f"{DATA_URL} as {path}, or pass --input PATH") from None
    if hashlib.sha256(payload).hexdigest() != DATA_SHA256:
        raise UserError(f"{DATA_URL} sent another file (SHA-256 mismatch); nothing was written")
    try:
        write_whole_file(path, lambda f: f.write(payload), 'wb')
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}; nothing was written; "
                        f"pass --input PATH") from None

def read_names(path):
    """One name per line: spaces stripped, lower-cased, blank lines and names longer than
    max_letters skipped (and counted). Returns the names, that count and the file's SHA-256."""
    try:
        with open(path, 'rb') as f:
            raw = f.read()
        text = raw.decode('utf-8-sig')  # -sig: a byte-order mark (Windows) is dropped
    except OSError as err:  # missing, a directory, not allowed...
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (bad byte at offset {err.start})") from None
    names, too_long = [], 0
    for line_number, line in enumerate(text.splitlines(), 1):
        name = line.strip().lower()
        if not name.isprintable():
            raise UserError(f"{path} line {line_number} holds a control character")
        if len(name) > max_letters:
            too_long += 1
        elif name:
            names.append(name)
    if not names:
        detail = f" ({too_long} longer than {max_letters} characters)" if too_long else ""
        raise UserError(f"{path} contains no usable names{detail}; give one name per line")
    return names, too_long, hashlib.sha256(raw).hexdigest()

def prepare(names, seed):  # all from one generator seeded once, which goes on to train and sample
    rng = random.Random(seed)
    tok = Tokenizer(names)
    train_names, heldout_names = split(names, rng)
    state_dict = init_params(tok.vocab_size, rng)
    return rng, tok, train_names, heldout_names, length_model(train_names), state_dict

def parse_template(template, tok):
    """--template: letters to keep, '_' for a letter to choose, a trailing '*' for any number
    more. Returns sample()'s template: (tokens, open_ended)."""
    open_ended = template.endswith('*')
    body = (template[:-1] if open_ended else template).lower()
    if not 0 < len(body) <= max_letters or any(ch != '_' and ch not in tok.stoi for ch in body):
        raise UserError(f"the template {template!r} is not 1 to {max_letters} of '_' and the "
                        f"letters {''.join(tok.chars)}, then an optional '*'")
    return [tok.MASK if ch == '_' else tok.stoi[ch] for ch in body], open_ended

# Worker processes: each step's names, and the held-out names, shared among the cores
def start_worker(tok):  # once in each worker: a model whose weights every task sets
    global worker_tok, worker_state_dict
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # SIGTERM ends a worker, as the pool expects
    threading.Thread(target=exit_with_parent, daemon=True).start()  # however the main ends
    pause_collector()
    worker_tok, worker_state_dict = tok, init_params(tok.vocab_size, random.Random(0))

def exit_with_parent():
    multiprocessing.parent_process().join()  # returns once the main process has ended
    os._exit(1)

def worker_gradients(weights, batch):  # in a worker: each name's (loss, gradient) at weights
    for p, w in zip(parameters(worker_state_dict), weights):
        p.data = w
    return [name_gradient(clean, noisy, worker_tok, worker_state_dict) for clean, noisy in batch]

def worker_nelbos(weights, length_probs, pairs):  # in a worker: each (name, masks)'s NELBO
    return [nelbo(name, masks, worker_tok, weights, length_probs) for name, masks in pairs]

class Workers:  # a pool of processes, started once, that share out a task's items in order
    def __init__(self, n_workers, tok):
        self.n_workers = n_workers
        self.pool = concurrent.futures.ProcessPoolExecutor(n_workers, initializer=start_worker,
                                                           initargs=(tok,))
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main's to handle:
        started = self.pool.map(int, range(n_workers))  # every worker starts now, ignoring it
        signal.signal(signal.SIGINT, handler)
        list(started)  # one that cannot start fails here

    def share(self, task, items, *fixed, size=None):  # runs of `size` consecutive items
        size = size or -(-len(items) // self.n_workers)  # by default one run per worker
        try:
            futures = [self.pool.submit(task, *fixed, items[i:i + size])
                       for i in range(0, len(items), size)]
            return [answer for future in futures for answer in future.result()]
        except concurrent.futures.BrokenExecutor:
            raise UserError("a worker process died; run again, or pass --workers 1") from None
        except Exception as err:  # raised in a worker, and passed on
            raise UserError(f"a worker process failed: {type(err).__name__}: {err}") from None

    def gradients(self, state_dict, batch):  # train()'s gradients
        return self.share(worker_gradients, batch, [p.data for p in parameters(state_dict)])

    def nelbos(self, weights, length_probs, names, masks):  # heldout_nelbo()'s nelbos,
        # in tasks of 20 names: a stop waits for no long task to end
        return self.share(worker_nelbos, list(zip(names, masks)), weights, length_probs, size=20)

def start_workers(n_workers, tok):  # or None, one process: for 1 worker, or if they cannot start
    try:
        return Workers(n_workers, tok) if n_workers > 1 else None
    except (OSError, ImportError, NotImplementedError, concurrent.futures.BrokenExecutor) as err:
        print(f"microdiffusion.py: note: cannot start worker processes ({err}); running in "
              f"one process, with the same result", file=sys.stderr)

# Checkpoints: train once with --save, sample as often as you like with --load
HYPERPARAMETERS = {'n_layer': n_layer, 'n_embd': n_embd, 'block_size': block_size,
                   'n_head': n_head, 'mlp_hidden': mlp_hidden}

def is_saved_model(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f).get('format') == MODEL_FORMAT
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, or not an object
        return False

def check_save_path(path):  # fails now, not after training; --save replaces only a saved model
    if os.path.exists(path) and not is_saved_model(path):
        raise UserError(f"cannot save the model as {path}: it is there already and is not a "
                        f"saved model (--save replaces only those); choose another path")
    try:  # can a file be made in that folder?
        tempfile.TemporaryFile(dir=os.path.dirname(os.path.abspath(path))).close()
    except OSError as err:
        raise UserError(f"cannot save the model as {path}: {err.strerror or err}") from None

def save_model(path, tok, state_dict, length_probs, rng, args, names_sha256):  # one JSON file
    model = {'format': MODEL_FORMAT, 'version': MODEL_VERSION, 'vocabulary': ''.join(tok.chars),
             'hyperparameters': HYPERPARAMETERS, 'names_sha256': names_sha256, 'seed': args.seed,
             'num_steps': args.num_steps, 'batch_size': args.batch_size,
             'learning_rate': learning_rate, 'length_probs': length_probs,
             'state_dict': as_floats(state_dict), 'rng_state': rng.getstate()}
    try:
        write_whole_file(path, lambda f: json.dump(model, f), 'w')
    except OSError as err:
        raise UserError(f"cannot save the model as {path}: {err.strerror or err}; "
                        f"nothing was written") from None

def load_model(path, tok, args, names_sha256, state_dict):
    """Check a saved model and put its weights into state_dict; return the rest of it."""
    def bad(why):
        return UserError(f"{path} is not a usable model: {why}")
    try:
        with open(path, encoding='utf-8') as f:
            model = json.load(f)
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except ValueError as err:  # not JSON, cut short, or not UTF-8
        raise bad(f"not complete JSON ({err})") from None
    if not isinstance(model, dict) or model.get('format') != MODEL_FORMAT:
        raise bad(f"not a {MODEL_FORMAT} file")
    if model.get('names_sha256') != names_sha256:  # or held-out names would be mixed up
        raise UserError(f"{path} was trained on another names file; pass its --input")
    if model.get('seed') != args.seed:  # the seed picks the held-out names
        raise UserError(f"{path} was trained with --seed {model.get('seed')}; pass --seed "
                        f"{model.get('seed')}")
    for key, expected in (('version', MODEL_VERSION), ('hyperparameters', HYPERPARAMETERS),
                          ('vocabulary', ''.join(tok.chars))):
        if model.get(key) != expected:
            raise bad(f"its {key}: {model.get(key)!r}, where this run has {expected!r}")
    try:
        length_probs = [float(p) for p in model['length_probs']]
        version, internal_state, gauss_next = model['rng_state']
        rng_state = (version, tuple(internal_state), gauss_next)
        random.Random().setstate(rng_state)  # raises if the state is malformed
        settings = int(model['num_steps']), int(model['batch_size']), float(model['learning_rate'])
        saved = model['state_dict']
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise bad(f"a field is missing or malformed ({type(err).__name__}: {err})") from None
    if len(length_probs) != max_letters + 1 or not all(0 < p < 1 for p in length_probs[1:]):
        raise bad(f"its length model is not a probability for each length 1..{max_letters}")
    if not isinstance(saved, dict) or set(saved) != set(state_dict):
        raise bad(f"its weights are not the matrices {', '.join(state_dict)}")
    for name, matrix in state_dict.items():
        rows = saved[name]
        if not isinstance(rows, list) or len(rows) != len(matrix) or any(
                not isinstance(row, list) or len(row) != len(matrix[0]) for row in rows):
            raise bad(f"weight matrix {name} is not {len(matrix)} x {len(matrix[0])}")
        for row, saved_row in zip(matrix, rows):
            for p, w in zip(row, saved_row):
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
                    raise bad(f"weight matrix {name} holds {w!r}, not a finite number")
                p.data = float(w)
    return length_probs, rng_state, settings

# The command line
def whole_number(minimum):  # an argparse type: a whole number no smaller than minimum
    def parse(text):
        if not text.strip().lstrip('-').isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"not a whole number >= {minimum}: {text!r}")
        return int(text)
    return parse

class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage and then the error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

def make_parser():
    parser = OneLineParser(prog='microdiffusion.py', description=__doc__.split('\n')[1])
    add = parser.add_argument
    add('--input', metavar='PATH', help='names, one per line (default input.txt, downloaded)')
    add('--num-steps', metavar='N', type=whole_number(1), help=f'default {num_steps}')
    add('--batch-size', metavar='B', type=whole_number(1), help=f'default {batch_size}')
    add('--workers', metavar='N', type=whole_number(1), help='default: one per core; PyPy 1')
    add('--seed', metavar='N', type=int, default=42, help='default 42')
    add('--eval-names', metavar='N', type=whole_number(0), default=1000, help='0 skips the NELBO')
    add('--num-samples', metavar='N', type=whole_number(0), default=20, help='default 20')
    add('--denoise-steps', metavar='N', type=whole_number(1), default=64, help='default 64')
    add('--sampler', choices=SAMPLERS, default='confidence', help='default confidence')
    add('--template', metavar='T', default='_*', help="e.g. ma*: '_' a letter, '*' any more")
    add('--trace', action='store_true', help='print how the first name emerged')
    add('--save', metavar='PATH', help='save the model after training (a JSON file)')
    add('--load', metavar='PATH', help='load a saved model instead of training')
    return parser

# Reporting, and main()
def progress_printer(num_steps, progress):  # train()'s on_step: a line every 100 steps
    start, recent = time.time(), []
    def on_step(step, loss):
        progress['where'] = f"at training step {step} of {num_steps}"
        if step % 10 == 0:  # under PyPy, with no reference counting, 1.4x faster than leaving
            gc.collect()    # its collector on; under CPython, 3 ms every 10 steps
        if not math.isfinite(loss):
            raise UserError(f"the loss became {loss} at step {step}; training stopped")
        recent[:] = recent[-99:] + [loss]
        if step == 1 or step % 100 == 0 or step == num_steps:
            elapsed = time.time() - start
            print(f"step {step:5d} / {num_steps} | loss {loss:.4f} | mean of last {len(recent):3d} "
                  f"{sum(recent) / len(recent):.4f} | {elapsed:5.1f}s elapsed | "
                  f"{elapsed / step * (num_steps - step):5.1f}s left", flush=True)
    return on_step

def run(args, progress):
    """The whole program; progress tells main() where it was and what it wrote."""
    if args.load and (args.num_steps or args.batch_size or args.save):
        raise UserError("--num-steps, --batch-size and --save are about training, and --load "
                        "does not train; leave them out")
    args.num_steps, args.batch_size = args.num_steps or num_steps, args.batch_size or batch_size
    names_path = args.input or 'input.txt'
    if args.input is None and not os.path.exists(names_path):
        print(f"{names_path} is missing: downloading it from {DATA_URL}")
        download_names(names_path)
    names, too_long, names_sha256 = read_names(names_path)
    rng, tok, train_names, heldout_names, length_probs, state_dict = prepare(names, args.seed)
    template = parse_template(args.template, tok)  # a bad template or --save path fails now,
    if args.save:                                  # not after minutes of training
        check_save_path(args.save)
    print(f"names: {len(names):,} ({len(train_names):,} for training, "
          f"{len(heldout_names):,} held out)")
    if too_long:
        print(f"skipped {too_long:,} names longer than {max_letters} characters")
    print(f"vocabulary: {tok.vocab_size} tokens ({len(tok.chars)} characters, MASK and END)")
    print(f"parameters: {len(parameters(state_dict)):,}")

    # under PyPy sending the weights costs more than a second core saves: one process
    n_workers = args.workers or (1 if sys.implementation.name == 'pypy' else os.cpu_count() or 1)
    workers = start_workers(n_workers, tok)
    try:
        if args.load:
            length_probs, rng_state, (args.num_steps, args.batch_size, lr) = load_model(
                args.load, tok, args, names_sha256, state_dict)
            rng.setstate(rng_state)  # the generator as training left it: the same names follow
            progress['where'] = "after loading the model"
            print(f"loaded {args.load}: {args.num_steps:,} steps of {args.batch_size} names, "
                  f"learning rate {lr:g}")
        else:
            progress['where'] = f"at training step 0 of {args.num_steps}"
            train(train_names, tok, state_dict, args.num_steps, args.batch_size, rng,
                  workers.gradients if workers and args.batch_size > 1 else None,
                  progress_printer(args.num_steps, progress))
            progress['where'] = "after training"
            if args.save:
                save_model(args.save, tok, state_dict, length_probs, rng, args, names_sha256)
                progress['saved'] = args.save
                print(f"saved the model to {args.save} "
                      f"({os.path.getsize(args.save) / 1024:,.0f} KiB)")
        weights = as_floats(state_dict)
        eval_names = heldout_names[:args.eval_names]
        if args.eval_names and not eval_names:
            print("held-out NELBO: skipped, too few names to hold any out (it takes 10 or more)")
        elif eval_names:
            progress['where'] = "during the held-out evaluation"
            eval_rng = random.Random(args.seed + 1)  # its own generator: the samples stay the same
            per_char, stderr = heldout_nelbo(eval_names, tok, weights, length_probs, eval_rng,
                                             workers.nelbos if workers else None)
            baseline = context_free_nll(train_names, eval_names, tok, length_probs)
            print(f"held-out NELBO: {per_char:.3f} ± {stderr:.3f} nats/char on "
                  f"{len(eval_names):,} names never trained on ({baseline:.3f} without context)")
    finally:
        if workers:
            workers.pool.shutdown(cancel_futures=True)
    if args.num_samples:
        progress['where'] = "while sampling"
        trained_on = set(train_names[:args.num_steps * args.batch_size])  # read in order
        print_samples(args, tok, weights, length_probs, rng, template, set(names), trained_on)

def print_samples(args, tok, weights, length_probs, rng, template, real_names, trained_on):
    print(f"--- {args.num_samples} {'sample' if args.num_samples == 1 else 'samples'} "
          f"({args.sampler} sampler, {args.denoise_steps} denoising steps) ---")
    marks, first_trace = [], None
    for n in range(1, args.num_samples + 1):
        name, trace = sample(tok, weights, length_probs, rng, args.denoise_steps, args.sampler,
                             template)
        first_trace = first_trace or trace
        marks.append('trained on' if name in trained_on else
                     'real, never trained on' if name in real_names else '')
        print(f"sample {n:2d}: {name}" + (f"  ({marks[-1]})" if marks[-1] else ''))
    unseen = marks.count('real, never trained on')
    print(f"{marks.count('')} new, {marks.count('trained on')} the model was trained on, "
          f"{unseen} real {'name' if unseen == 1 else 'names'} it never saw")
    if args.trace:
        print("--- how sample 1 emerged ('_' is MASK, '.' is END) ---\n step      t  temp  canvas")
        for step, t, temperature, canvas in first_trace:
            temp = '    -' if temperature is None else f"{temperature:5.2f}"
            print(f"{step:5d}  {t:.3f} {temp}  {tok.decode(canvas)}.")

def main(argv=None):
    args = make_parser().parse_args(argv)
    progress = {'where': "before training", 'saved': None}
    def terminate(signum, frame):
        raise Terminated
    signal.signal(signal.SIGTERM, terminate)
    gc.disable()  # as pause_collector() does, and under PyPy too: on_step collects instead
    try:
        run(args, progress)
    except UserError as err:
        print(f"microdiffusion.py: error: {err}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated) as stop:
        how = 'terminated' if isinstance(stop, Terminated) else 'interrupted'
        wrote = f"the model was saved to {progress['saved']}" if progress['saved'] else \
            "nothing was written"
        print(f"microdiffusion.py: {how} {progress['where']}; {wrote}", file=sys.stderr)
        return 143 if isinstance(stop, Terminated) else 130
    except BrokenPipeError:  # the reader left early (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0

if __name__ == '__main__':
    sys.exit(main())
