"""
microdiffusion: a masked diffusion language model in one file of pure Python.

It learns ~32,000 human names and makes new ones the diffusion way: start from a row
of [MASK] tokens and unmask them step by step, each step guided by a bidirectional
transformer that predicts every masked position from everything it can see.

This is the diffusion companion of Karpathy's microgpt, and simplifies on purpose:
a scalar autograd engine instead of tensors, four names per training step (each with its own
graph), a canvas as long as the name plus one END token (the length is drawn first, from the
training names' lengths), a 2-layer model of 6,848 parameters, and no dependencies at all.
"""

import argparse        # the command-line flags
import gc              # the cyclic garbage collector, paused while graphs are built
import hashlib         # hashlib.sha256 checks the downloaded data set and names a checkpoint's data
import json            # json.dump and json.load: a saved model is one JSON file
import math            # math.exp, math.log, math.cos, math.sqrt, math.isfinite
import multiprocessing  # worker processes that share a batch's names (--workers)
import operator        # operator.mul, the fast path of a float dot product
import os              # os.path, os.replace for an all-or-nothing download
import random          # random.Random, the one seeded source of randomness
import signal          # workers leave Ctrl-C to the main process
import sys             # sys.stdout, sys.stderr, sys.exit, sys.implementation
import tempfile        # the temporary file a download or a saved model is written to first
import time            # time.time for elapsed and remaining time
import urllib.error    # urllib.error.URLError: what an offline download raises
import urllib.request  # urllib.request.urlopen, used only when input.txt is missing


class UserError(Exception):
    """Something about the input that the user can fix; main() prints it as one line."""


# Let there be data: one name per line, fetched from a pinned address only when missing
DATA_URL = 'https://raw.githubusercontent.com/karpathy/makemore/988aa59/names.txt'
DATA_SHA256 = '0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d'


def download_names(path):
    """Fetch the names data set, check it, and write it to path in one piece (or not at all)."""
    url = DATA_URL
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, 'reason', err)
        raise UserError(f"{path} is missing and it could not be downloaded ({reason}); "
                        f"save the names file from {url} as {path}, or pass --input PATH") from None
    if hashlib.sha256(payload).hexdigest() != DATA_SHA256:
        raise UserError(f"the download from {url} is not the expected file (SHA-256 mismatch); "
                        f"nothing was written")
    try:
        write_whole_file(path, lambda f: f.write(payload), 'wb')
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}; nothing was written; "
                        f"pass --input PATH") from None


def write_whole_file(path, write, mode):
    """Write a new file beside path with write(f), then rename it onto path: a write that fails
    or is interrupted never leaves a partial file, and never damages what was at path."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '-', suffix='.tmp', dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # the permissions of a file made the ordinary way, not mkstemp's 0600
        with os.fdopen(fd, mode) as f:
            write(f)
        os.replace(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise


def load_names(path, max_letters):
    """Read one name per line: strip spaces, lower-case, skip blank lines and names longer
    than max_letters."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a text file with one name per line")
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; pass --input PATH to a text file with one name per line") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    try:
        text = raw.decode('utf-8-sig')  # -sig: a byte-order mark from a Windows editor is dropped
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (bad byte at offset {err.start}); "
                        f"give a plain text file with one name per line") from None
    names, too_long = [], 0
    for line_number, line in enumerate(text.splitlines(), 1):
        name = line.strip().lower()
        if not name:
            continue
        if not name.isprintable():
            raise UserError(f"{path} line {line_number} holds a control character; "
                            f"give a plain text file with one name per line")
        if len(name) > max_letters:
            too_long += 1  # skipped, never cut short into a different name
            continue
        names.append(name)
    if not names:
        detail = f" ({too_long} longer than {max_letters} characters)" if too_long else ""
        raise UserError(f"{path} contains no usable names{detail}; give one name per line")
    return names, too_long


# Let there be a tokenizer: one id per character, then MASK, then END
class Tokenizer:
    """Characters of the data, sorted, are ids 0..n-1; MASK is id n and END id n+1, the last two.
    A name of L letters is a canvas of L + 1 tokens: its letters, then END."""

    def __init__(self, names, block_size):
        self.chars = sorted(set(''.join(names)))
        self.MASK = len(self.chars)      # "not revealed yet": what diffusion starts from
        self.END = len(self.chars) + 1   # "the name ends here": always visible, never masked
        self.vocab_size = len(self.chars) + 2
        self.max_letters = block_size - 1  # the longest canvas holds these letters and END
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    def encode(self, name):
        """A name as len(name) + 1 token ids: its letters, then END."""
        return [self.stoi[ch] for ch in name] + [self.END]

    def decode(self, token_ids):
        """The letters of a canvas, without its END."""
        return ''.join(self.chars[t] for t in token_ids if t != self.END)

    def show(self, token_ids):
        """All positions, as the trace prints them: letters, '_' for MASK, '.' for END."""
        return ''.join('_' if t == self.MASK else '.' if t == self.END else self.chars[t] for t in token_ids)


# Let there be lengths: how long a name is gets decided first, by counting
def length_model(names, max_letters):
    """p(L) for L = 0..max_letters: how often the names have L letters, add-one smoothed over
    1..max_letters so that every length the canvas holds stays possible. p(0) = 0."""
    counts = [0] + [1] * max_letters
    for name in names:
        counts[len(name)] += 1
    n_names = sum(counts)
    return [c / n_names for c in counts]


def draw_length(length_probs, rng, min_letters=1):
    """A length from p(L), restricted to L >= min_letters (a template's fixed part)."""
    lengths = range(min_letters, len(length_probs))
    return rng.choices(lengths, weights=length_probs[min_letters:])[0]


# Let there be autograd: a scalar Value that remembers how it was made
class Value:
    """One number in the computation graph, its gradient, its children and their local gradients."""
    __slots__ = ('data', 'grad', '_children', '_local_grads', '_visited_by')

    def __init__(self, data, children=(), local_grads=()):
        self.data = data                  # the number computed in the forward pass
        self.grad = 0.0                   # d(loss)/d(this), filled in by backward()
        self._children = children         # the Values this one was computed from
        self._local_grads = local_grads   # d(this)/d(child), one per child
        self._visited_by = None           # the backward() call that last reached this node

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

    def __neg__(self): return self * -1                    # -self
    def __radd__(self, other): return self + other         # other + self
    def __sub__(self, other): return self + (-other)       # self - other
    def __rsub__(self, other): return other + (-self)      # other - self
    def __rmul__(self, other): return self * other         # other * self
    def __truediv__(self, other): return self * other ** -1     # self / other
    def __rtruediv__(self, other): return other * self ** -1    # other / self

    # Two n-ary nodes for speed: a sum or a dot product of n Values is one node, not n-1 or 2n-1
    @staticmethod
    def sum(values):  # d(sum)/d(x_i) = 1
        values = tuple(values)
        return Value(sum(x.data for x in values), values, (1.0,) * len(values))

    @staticmethod
    def dot(ws, xs):  # d(w.x)/d(w_i) = x_i and d(w.x)/d(x_i) = w_i
        w_data, x_data = [w.data for w in ws], [x.data for x in xs]
        return Value(sum(map(operator.mul, w_data, x_data)), ws + xs, x_data + w_data)

    def backward(self):
        # order the graph so that every node comes after the nodes it was made from: a
        # depth-first search with its own stack, not recursion, so there is no depth limit and
        # no closure that would tie each graph into a reference cycle (which only the slow
        # cyclic garbage collector could free). A node reached by this call is marked with a
        # token unique to the call, rather than kept in a set: no hashing, which PyPy does
        # slowly for objects. Parameters and constants have no children and need no place in
        # the order: their gradient is only ever added to.
        this_call = object()
        topo, stack = [], [(self, False)]
        while stack:
            node, children_done = stack.pop()
            if children_done:
                topo.append(node)
            elif node._visited_by is not this_call:
                node._visited_by = this_call
                stack.append((node, True))
                for child in node._children:
                    if child._children and child._visited_by is not this_call:
                        stack.append((child, False))
        self.grad = 1.0
        for node in reversed(topo):  # the chain rule, from the loss back to the parameters
            node_grad = node.grad
            if node_grad == 0.0:
                continue  # e.g. behind a ReLU that was off: nothing flows back from here
            for child, local_grad in zip(node._children, node._local_grads):
                child.grad += local_grad * node_grad
        return len(topo)  # how many nodes the step built, for the benchmark


# Let there be hyperparameters
n_layer = 2            # transformer blocks
n_embd = 16            # width of every token's vector
block_size = 16        # the longest canvas: a name of up to 15 letters, then END
n_head = 4             # attention heads
head_dim = n_embd // n_head
mlp_hidden = 4 * n_embd
init_std = 0.08        # weights start as N(0, 0.08)
batch_size = 4         # names per training step, their gradients averaged
num_steps = 1600       # training steps
learning_rate = 0.007  # decays linearly to 0
beta1, beta2, eps_adam = 0.85, 0.99, 1e-8
t_min = 0.2            # training noise levels t are log-uniform in [t_min, 1]


# Let there be parameters: every weight matrix, by the names PyTorch code would use
def init_params(vocab_size, rng):
    """The state dict: wte (tied: it embeds tokens and reads them out), wpe, and per layer
    attention (wq, wk, wv, wo) and MLP (fc1, fc2) matrices. No biases."""
    def matrix(n_out, n_in):
        return [[Value(rng.gauss(0, init_std)) for _ in range(n_in)] for _ in range(n_out)]
    state_dict = {'wte': matrix(vocab_size, n_embd), 'wpe': matrix(block_size, n_embd)}
    for i in range(n_layer):
        for name in ('attn_wq', 'attn_wk', 'attn_wv', 'attn_wo'):
            state_dict[f'layer{i}.{name}'] = matrix(n_embd, n_embd)
        state_dict[f'layer{i}.mlp_fc1'] = matrix(mlp_hidden, n_embd)
        state_dict[f'layer{i}.mlp_fc2'] = matrix(n_embd, mlp_hidden)
    return state_dict


def parameters(state_dict):
    """Every trainable Value once (wte serves as both embedding and output layer)."""
    return [p for matrix in state_dict.values() for row in matrix for p in row]


def as_floats(state_dict):
    """The same weights as plain floats: the model then runs without building any graph."""
    return {name: [[p.data for p in row] for row in matrix] for name, matrix in state_dict.items()}


# Let there be building blocks. Each works on a list of Values (training: a graph is built for
# backward) or on a list of plain floats (sampling, evaluation: no graph, and about four times
# faster), with the same arithmetic in the same order. Only the five helpers below and relu tell
# the two apart
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
    top = max(data(z) for z in logits)  # exp of a large logit overflows; a shift changes no probability
    exps = [exp(z - top) for z in logits]
    sum_exps = total(exps)
    return [e / sum_exps for e in exps]


def rmsnorm(x):  # x / sqrt(mean(x^2) + 1e-5): every vector comes out with a root mean square of 1
    mean_square = total([xi * xi for xi in x]) / len(x)
    scale = (mean_square + 1e-5) ** -0.5
    return [xi * scale for xi in x]


def attention(q, keys, values):
    """One head at one position: the scores q . k / sqrt(head_dim) against every key, their
    softmax, and the weighted sum of the values."""
    scores = [dot(q, k) / math.sqrt(len(q)) for k in keys]
    weights = softmax(scores)
    return [dot(weights, [v[d] for v in values]) for d in range(len(q))]


def cross_entropy(logits, target):  # -log softmax(logits)[target], by log-sum-exp: never log(0)
    top = max(data(z) for z in logits)
    return log(total([exp(z - top) for z in logits])) - (logits[target] - top)


# Let there be the model: a bidirectional transformer that predicts every position at once
def mask_predictor(token_ids, state_dict, positions=None):
    """Logits over the vocabulary at each position of a (partly masked) canvas. Only the
    positions asked for are computed through the last layer (default: all); the rest are None."""
    sd = state_dict
    n_pos = len(token_ids)
    x = [rmsnorm([te + pe for te, pe in zip(sd['wte'][token], sd['wpe'][pos])])
         for pos, token in enumerate(token_ids)]
    for i in range(n_layer):
        x_norm = [rmsnorm(xi) for xi in x]
        k = [linear(xi, sd[f'layer{i}.attn_wk']) for xi in x_norm]  # a key and a value at every
        v = [linear(xi, sd[f'layer{i}.attn_wv']) for xi in x_norm]  # position, left and right alike
        # the last layer only has to finish the positions whose logits will be read
        rows = range(n_pos) if positions is None or i < n_layer - 1 else positions
        x_next = [None] * n_pos
        for pos in rows:
            # 1) multi-head attention. Every position reads every key: there is no causal mask,
            # which is what lets a masked position read the letters after it too
            q = linear(x_norm[pos], sd[f'layer{i}.attn_wq'])
            x_attn = []
            for h in range(n_head):  # each head reads its own head_dim slice of q, k and v
                hs = slice(h * head_dim, (h + 1) * head_dim)
                x_attn.extend(attention(q[hs], [k_j[hs] for k_j in k], [v_j[hs] for v_j in v]))
            # the output projection, and the residual connection
            x_attn = [a + b for a, b in zip(linear(x_attn, sd[f'layer{i}.attn_wo']), x[pos])]
            # 2) MLP: expand, ReLU, project back, and the residual connection
            hidden = relu(linear(rmsnorm(x_attn), sd[f'layer{i}.mlp_fc1']))
            x_next[pos] = [a + b for a, b in zip(linear(hidden, sd[f'layer{i}.mlp_fc2']), x_attn)]
        x = x_next
    # the output layer is wte itself (weight tying): a token's logit is how much the final
    # vector looks like that token's embedding
    mask_id, end_id = len(sd['wte']) - 2, len(sd['wte']) - 1
    logits = [None] * n_pos
    for pos in rows:
        logits[pos] = linear(x[pos], sd['wte'])
        # MASK and END (the last two ids) are never a right answer: a masked position always
        # hides a letter. Push their logits down so no probability is spent on them, in the
        # loss and in the sampler alike
        logits[pos][mask_id] = logits[pos][mask_id] - 1e6
        logits[pos][end_id] = logits[pos][end_id] - 1e6
    return logits


# Let there be noise: hide each letter behind MASK with probability t
def noise_level(rng):
    """t, log-uniform in [t_min, 1]: t in [0.2, 0.45] is as likely as t in [0.45, 1], so lightly
    masked names, where most context is visible, are seen as often as heavily masked ones."""
    return math.exp(rng.uniform(math.log(t_min), 0.0))


def corrupt(clean, t, rng, mask_id):
    """Each letter becomes MASK with probability t; at least one does, so every step learns.
    The last token, END, always stays: the length is known before any letter is."""
    letters = clean[:-1]
    noisy = [mask_id if rng.random() < t else token for token in letters]
    if mask_id not in noisy:
        noisy[rng.randrange(len(noisy))] = mask_id
    return noisy + clean[-1:]


def masked_loss(logits, clean, noisy, mask_id):
    """Mean cross-entropy of the clean letter at the masked positions, and only there: the
    visible tokens are given, there is nothing to learn from predicting them."""
    losses = [cross_entropy(logits[pos], clean[pos]) for pos in range(len(clean)) if noisy[pos] == mask_id]
    return total(losses) * (1.0 / len(losses))


# Let there be Adam
class Adam:
    def __init__(self, params):
        self.params = params
        self.m = [0.0] * len(params)  # running mean of the gradient
        self.v = [0.0] * len(params)  # running mean of the squared gradient
        self.step_count = 0

    def step(self, lr_t):
        """One update with bias-corrected moments; resets every gradient to zero."""
        self.step_count += 1
        m_correction = 1 - beta1 ** self.step_count
        v_correction = 1 - beta2 ** self.step_count
        m, v = self.m, self.v
        for i, p in enumerate(self.params):
            g = p.grad
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat = m[i] / m_correction
            v_hat = v[i] / v_correction
            p.data -= lr_t * m_hat / (v_hat ** 0.5 + eps_adam)
            p.grad = 0.0


# Let there be training: a batch of names per step, each corrupted at its own noise level
def name_gradient(clean, noisy, tok, state_dict, params):
    """The masked loss of one corrupted name, and its gradient for every parameter in order.
    The parameters' .grad are left at zero."""
    masked = [pos for pos, token in enumerate(noisy) if token == tok.MASK]
    loss = masked_loss(mask_predictor(noisy, state_dict, masked), clean, noisy, tok.MASK)
    loss.backward()
    grad = [p.grad for p in params]
    for p in params:
        p.grad = 0.0
    return loss.data, grad


def train(names, tok, state_dict, num_steps, rng, batch_size=1, on_step=None, gradients=None):
    """Train in place; return the mean loss of every step. on_step(step, loss) reports progress.
    gradients(weights, batch) may compute the names' (loss, gradient) pairs elsewhere (the
    worker processes at the end of this file); by default they are computed right here."""
    params = parameters(state_dict)
    optimizer = Adam(params)
    losses = []
    # the graphs hold no reference cycles, so reference counting frees each one as its step
    # ends; the cyclic collector would only scan the live graph again and again: pause it
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for step in range(1, num_steps + 1):
            batch = []  # the noise of every name is drawn here, in batch order, from the one generator
            for b in range(batch_size):
                clean = tok.encode(names[((step - 1) * batch_size + b) % len(names)])
                batch.append((clean, corrupt(clean, noise_level(rng), rng, tok.MASK)))
            if gradients is None:
                results = [name_gradient(clean, noisy, tok, state_dict, params) for clean, noisy in batch]
            else:
                results = gradients([p.data for p in params], batch)
            loss = sum(name_loss for name_loss, _ in results) / batch_size
            if not math.isfinite(loss):
                raise UserError(f"the loss became {loss} at step {step}; training stopped")
            # the batch's loss is the mean of its names' losses, so its gradient is the mean of
            # theirs, summed name by name in batch order: the same digits wherever they came from
            for p, *name_grads in zip(params, *(grad for _, grad in results)):
                p.grad = sum(name_grads) / batch_size
            lr_t = learning_rate * (1 - (step - 1) / num_steps)  # linear decay to 0
            optimizer.step(lr_t)
            losses.append(loss)
            if on_step:
                on_step(step, loss)
            if step % 10 == 0:
                gc.collect()  # cheap here; PyPy needs it, or it keeps dead graphs for a long time
    finally:
        if gc_was_enabled:
            gc.enable()
    return losses


# Let there be evaluation: the negative ELBO of names the model never saw
def nelbo_masks(n_letters, rng, repeats=1):
    """Which letters each term of a name's NELBO hides: `repeats` random subsets of each size
    k = 1..L."""
    return [sorted(rng.sample(range(n_letters), k)) for k in range(1, n_letters + 1) for _ in range(repeats)]


def nelbo(name, tok, weights, length_probs, masks, repeats=1):
    """An unbiased estimate of one name's negative ELBO in nats: an upper bound on -log p(name),
    p being the model's own distribution (the length model, then the letters unmasked in random
    order at temperature 1: the 'random' sampler, not the 'confidence' one). The length comes
    first and costs exactly -log p(L). For the absorbing (masking) process over the L letters,
    the rest is the sum over k = 1..L of c_k, where c_k is the mean cross-entropy over the
    masked letters when exactly k random letters are masked. Each c_k is estimated from the
    `repeats` subsets of size k in masks (from nelbo_masks)."""
    clean = tok.encode(name)
    name_nelbo = -math.log(length_probs[len(name)])
    for masked in masks:
        noisy = list(clean)
        for pos in masked:
            noisy[pos] = tok.MASK
        name_nelbo += masked_loss(mask_predictor(noisy, weights, masked), clean, noisy, tok.MASK) / repeats
    return name_nelbo


def heldout_nelbo(names, tok, weights, length_probs, rng, repeats=1, nelbos=None):
    """NELBO per character (a name of L letters counts L + 1: its end counts, as an
    autoregressive model's end-of-name token does) and its standard error, in nats.
    nelbos(weights, length_probs, names, masks, repeats) may compute the names' NELBOs
    elsewhere (the worker processes); by default they are computed right here."""
    masks = [nelbo_masks(len(name), rng, repeats) for name in names]
    if nelbos is None:
        per_name = [nelbo(name, tok, weights, length_probs, m, repeats) for name, m in zip(names, masks)]
    else:
        per_name = nelbos(weights, length_probs, names, masks, repeats)
    n_chars = [len(name) + 1 for name in names]
    per_char = sum(per_name) / sum(n_chars)
    # standard error of a ratio of means, by the delta method
    residuals = [nll - per_char * n for nll, n in zip(per_name, n_chars)]
    mean_chars = sum(n_chars) / len(n_chars)
    variance = sum(r * r for r in residuals) / max(1, len(residuals) - 1)
    return per_char, math.sqrt(variance / len(residuals)) / mean_chars


def context_free_nll(train_names, test_names, tok, length_probs):
    """The context-free baseline: the same length model, then one letter distribution per
    position, counted on the training names with add-one smoothing; per character as above."""
    counts = [[1] * len(tok.chars) for _ in range(tok.max_letters)]
    for name in train_names:
        for pos, ch in enumerate(name):
            counts[pos][tok.stoi[ch]] += 1
    total_nll = 0.0
    for name in test_names:
        total_nll -= math.log(length_probs[len(name)])
        for pos, ch in enumerate(name):
            total_nll -= math.log(counts[pos][tok.stoi[ch]] / sum(counts[pos]))
    return total_nll / sum(len(name) + 1 for name in test_names)


# Let there be sampling: draw a length, then unmask its letters step by step
SAMPLERS = ('confidence', 'random')
# confidence sampler, chosen by tests/sampler_sweep.py on precision and recall together (see the
# README): the temperature falls with t from 1 (the model's own odds) to 0.8, and
# choice_noise * t * Gumbel noise is added to each log-confidence, so that letters the model
# rarely favours are not always sent back under MASK: names as varied as the left-to-right
# model's, first letters included
temperature_at_start, temperature_at_end = 1.0, 0.8
choice_noise = 1.5


def parse_template(template, tok):
    """A template fixes letters, '_' asks for one letter to choose, and a trailing '*' lets the
    length model add any number more (none included). Returns the template's tokens (MASK for
    each '_') and whether more letters may follow."""
    open_ended = template.endswith('*')
    body = template[:-1] if open_ended else template
    if not body:
        raise UserError("the template is empty; give letters, '_' for a letter to choose, and an optional trailing '*'")
    if '*' in body:
        raise UserError("'*' may only end the template")
    if len(body) > tok.max_letters:
        raise UserError(f"the template has {len(body)} letters; at most {tok.max_letters} fit")
    tokens = []
    for ch in body.lower():
        if ch == '_':
            tokens.append(tok.MASK)
        elif ch in tok.stoi:
            tokens.append(tok.stoi[ch])
        else:
            raise UserError(f"the template letter {ch!r} is not in the vocabulary ({''.join(tok.chars)})")
    return tokens, open_ended


def cosine_noise(i, n_steps):
    """The noise level at step i of n_steps counting down: 1 at i = n_steps, 0 at i = 0."""
    return math.cos(math.pi / 2 * (1 - i / n_steps))


def draw(scores, temperature, rng):
    """A token from softmax(scores / temperature), and the probabilities it was drawn from."""
    probs = softmax([z / temperature for z in scores])
    token = rng.choices(range(len(probs)), weights=probs)[0]
    return token, probs


def confidence(probs, token):
    """How sure the model is of the letter drawn at a position: its log-probability."""
    return math.log(probs[token])


def sample(tok, weights, length_probs, rng, denoise_steps=64, sampler='confidence', template='_*'):
    """Draw a length, then denoise its letters. Returns the name and a trace: (step, t,
    temperature, canvas) for every step that changed something. With the default template
    '_*' the length model alone decides the length.

    Samplers differ in how a letter is drawn and in which positions keep it:
    random      the model's own distribution (temperature 1), positions in random order: the
                ancestral baseline
    confidence  a temperature that falls with t from temperature_at_start to
                temperature_at_end; the positions whose drawn letter is most probable are
                kept, their order stirred by Gumbel noise (choice_noise * t, MaskGIT) while t
                is high"""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}")
    tokens, open_ended = parse_template(template, tok)
    if open_ended:  # the length comes first: drawn from p(L), at least the template's
        n_letters = draw_length(length_probs, rng, len(tokens))
        tokens += [tok.MASK] * (n_letters - len(tokens))
    canvas = tokens + [tok.END]
    n0 = canvas.count(tok.MASK)
    trace = [(0, 1.0, None, list(canvas))]
    for step, i in enumerate(range(denoise_steps, 0, -1), 1):
        t, s = cosine_noise(i, denoise_steps), cosine_noise(i - 1, denoise_steps)
        masked = [pos for pos, token in enumerate(canvas) if token == tok.MASK]
        n_to_commit = len(masked) - round(n0 * s)  # so that exactly round(n0 * s) stay masked
        if n_to_commit <= 0:
            continue  # the canvas stays as it is: no need to run the model
        if sampler == 'random':
            temperature = 1.0
        else:
            temperature = temperature_at_end + (temperature_at_start - temperature_at_end) * t
        logits = mask_predictor(canvas, weights, masked)
        drawn, priority = {}, {}
        for pos in masked:
            drawn[pos], probs = draw(logits[pos], temperature, rng)
            if sampler == 'confidence':
                gumbel_noise = -math.log(rng.expovariate(1.0) or 1e-300)  # Gumbel(0, 1); never log(0)
                priority[pos] = confidence(probs, drawn[pos]) + choice_noise * t * gumbel_noise
        if sampler == 'random':
            chosen = rng.sample(masked, n_to_commit)
        else:  # keep the highest priorities; the rest go back under MASK
            chosen = sorted(masked, key=lambda pos: -priority[pos])[:n_to_commit]
        for pos in chosen:  # committed letters are final: they are never masked again
            canvas[pos] = drawn[pos]
        trace.append((step, t, temperature, list(canvas)))
    return tok.decode(canvas), trace


def count_known(samples, trained_on, real_names):
    """How many samples are names the model was trained on, and how many are real names it
    never saw (held out, or training names that training never reached)."""
    trained = sum(name in trained_on for name in samples)
    unseen = sum(name in real_names and name not in trained_on for name in samples)
    return trained, unseen


def sample_stats(samples, train_names, heldout_names):
    """How varied and how name-like a list of samples is, and how far its length histogram is
    from the training names' (total-variation distance: half the sum of absolute differences)."""
    n = len(samples)
    in_train, in_heldout = count_known(samples, set(train_names), set(train_names) | set(heldout_names))
    def histogram(names):
        counts = {}
        for name in names:
            counts[len(name)] = counts.get(len(name), 0) + 1
        return {length: c / len(names) for length, c in counts.items()}
    sample_hist, data_hist = histogram(samples), histogram(train_names)
    lengths = sorted(set(sample_hist) | set(data_hist))
    tv = 0.5 * sum(abs(sample_hist.get(L, 0.0) - data_hist.get(L, 0.0)) for L in lengths)
    return {'n': n, 'distinct': len(set(samples)) / n, 'in_train': in_train / n,
            'in_heldout': in_heldout / n, 'new': (n - in_train - in_heldout) / n,
            'empty': sum(name == '' for name in samples) / n, 'length_tv': tv,
            'sample_hist': sample_hist, 'data_hist': data_hist}


# Let there be more cores: worker processes that share each step's names and the evaluation's
def gradient_worker(connection, tok):
    """One worker process: its own copy of the model. A request is ('gradients', weights, batch),
    answered with each name's (loss, gradient) from name_gradient, or ('nelbo', weights,
    [(name, masks), ...], length_probs, repeats), answered with each name's nelbo: the same
    functions the main process would call."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    state_dict = init_params(tok.vocab_size, random.Random(0))  # the shapes; weights come with each request
    params = parameters(state_dict)
    gc.disable()  # as in train(): the graphs free themselves
    requests = 0
    while True:
        try:
            request = connection.recv()
        except Exception:  # end of file, or a message cut off: the main process has gone or given up
            return
        if request is None:
            return
        requests += 1
        kind, weights, items, *fixed = request
        try:
            if kind == 'gradients':
                for p, w in zip(params, weights):
                    p.data = w
                answer = [name_gradient(clean, noisy, tok, state_dict, params) for clean, noisy in items]
            else:
                length_probs, repeats = fixed
                answer = [nelbo(name, tok, weights, length_probs, masks, repeats) for name, masks in items]
            reply = ('ok', answer)
        except Exception as err:  # told to the main process, which stops with one line
            reply = ('error', f"{type(err).__name__}: {err}")
        try:
            connection.send(reply)
        except OSError:
            return
        if requests % 10 == 0:
            gc.collect()  # as in train()


class Workers:
    """n worker processes, started once. Called like train()'s gradients argument: the batch is
    split into n runs of consecutive names, and the answers come back in batch order."""

    def __init__(self, n_workers, tok):
        context = multiprocessing.get_context()
        self.connections, self.processes = [], []
        try:
            for _ in range(n_workers):
                parent_end, child_end = context.Pipe()
                process = context.Process(target=gradient_worker, args=(child_end, tok), daemon=True)
                process.start()
                child_end.close()  # only the worker holds its end: if it dies, recv() sees EOF
                self.connections.append(parent_end)
                self.processes.append(process)
        except BaseException:
            self.close()
            raise

    def __call__(self, weights, batch):
        """Each name's (loss, gradient), in batch order: train()'s gradients argument."""
        return self.ask('gradients', weights, batch)

    def nelbos(self, weights, length_probs, names, masks, repeats):
        """Each name's NELBO, in order: heldout_nelbo()'s nelbos argument."""
        return self.ask('nelbo', weights, list(zip(names, masks)), length_probs, repeats)

    def ask(self, kind, weights, items, *fixed):
        """Split items into n runs of consecutive ones, one per worker; return the answers in
        the items' order."""
        n = len(self.connections)
        cuts = [len(items) * k // n for k in range(n + 1)]
        busy = [(connection, items[cuts[k]:cuts[k + 1]]) for k, connection in enumerate(self.connections)
                if cuts[k + 1] > cuts[k]]
        try:
            for connection, share in busy:
                connection.send((kind, weights, share, *fixed))
            answers = [connection.recv() for connection, _ in busy]
        except (EOFError, OSError):
            raise UserError("a worker process died; run again, or pass --workers 1") from None
        results = []
        for status, answer in answers:
            if status != 'ok':
                raise UserError(f"a worker process failed: {answer}")
            results.extend(answer)
        return results

    def close(self):
        """Ask each worker to stop; end any that does not within a second."""
        for connection in self.connections:
            try:
                connection.send(None)
            except OSError:
                pass
        for process in self.processes:
            process.join(timeout=1)
            if process.is_alive():
                process.terminate()
                process.join()
        for connection in self.connections:
            connection.close()


def start_workers(n_workers, tok):
    """Workers when n_workers > 1 and this machine can start processes; otherwise None, which
    means one process, with a one-line notice if processes could not be started."""
    if n_workers <= 1:
        return None
    try:
        return Workers(n_workers, tok)
    except (OSError, ImportError, ValueError) as err:
        print(f"microdiffusion.py: note: cannot start worker processes ({err}); "
              f"training in one process, with the same result", file=sys.stderr)
        return None


# Let there be checkpoints: train once (--save), sample as often as you like (--load)
CHECKPOINT_FORMAT, CHECKPOINT_VERSION = 'microdiffusion-model', 1


def hyperparameters():
    return {'n_layer': n_layer, 'n_embd': n_embd, 'block_size': block_size, 'n_head': n_head, 'mlp_hidden': mlp_hidden}


def file_sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_writable(path):
    """Fail now, before minutes of training, if a model cannot be saved at path."""
    if os.path.isdir(path):
        raise UserError(f"cannot save the model as {path}: it is a directory")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, probe = tempfile.mkstemp(prefix='.model-', suffix='.tmp', dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"cannot save the model as {path}: {err.strerror or err}") from None


def save_model(path, tok, state_dict, length_probs, rng, args, names_sha256):
    """The model as one JSON file, written whole or not at all (write_whole_file)."""
    model = {'format': CHECKPOINT_FORMAT, 'version': CHECKPOINT_VERSION,
             'vocabulary': ''.join(tok.chars), 'hyperparameters': hyperparameters(),
             'names_sha256': names_sha256, 'seed': args.seed,
             'num_steps': args.num_steps, 'batch_size': args.batch_size, 'learning_rate': learning_rate,
             'length_probs': length_probs, 'state_dict': as_floats(state_dict),
             'rng_state': rng.getstate()}  # plain integers: a later run goes on where this one stopped
    try:
        write_whole_file(path, lambda f: json.dump(model, f), 'w')
    except OSError as err:
        raise UserError(f"cannot save the model as {path}: {err.strerror or err}; nothing was written") from None


def load_model(path, tok, args, names_sha256, state_dict):
    """Read and check a saved model; put its weights into state_dict. Returns its length model,
    generator state and the training settings it records."""
    def bad(why):
        return UserError(f"{path} is not a usable model: {why}")
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a saved model")
    try:
        with open(path, encoding='utf-8') as f:
            model = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; save one first with --save {path}") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    except ValueError as err:  # not JSON, cut short, or not UTF-8
        raise bad(f"not complete JSON ({err})") from None
    if not isinstance(model, dict) or model.get('format') != CHECKPOINT_FORMAT:
        raise bad(f"not a {CHECKPOINT_FORMAT} file")
    if model.get('version') != CHECKPOINT_VERSION:
        raise bad(f"version {model.get('version')!r}; this code reads version {CHECKPOINT_VERSION}")
    if model.get('hyperparameters') != hyperparameters():
        raise bad(f"its hyperparameters {model.get('hyperparameters')} are not this code's {hyperparameters()}")
    if model.get('names_sha256') != names_sha256:
        raise UserError(f"{path} was trained on another names file (SHA-256 {str(model.get('names_sha256'))[:12]}...); "
                        f"pass --input with the file it was trained on, or its held-out names would be mixed up")
    if model.get('seed') != args.seed:
        raise UserError(f"{path} was trained with --seed {model.get('seed')}; pass --seed {model.get('seed')} "
                        f"so that its held-out names are the same")
    if model.get('vocabulary') != ''.join(tok.chars):
        raise bad("its vocabulary is not the one of the names file")
    try:
        length_probs = [float(p) for p in model['length_probs']]
        rng_state = model['rng_state']
        rng_state = (rng_state[0], tuple(rng_state[1]), rng_state[2])
        random.Random().setstate(rng_state)
        steps = (int(model['num_steps']), int(model['batch_size']), float(model['learning_rate']))
        saved = model['state_dict']
    except (KeyError, TypeError, ValueError, IndexError) as err:
        raise bad(f"a field is missing or malformed ({type(err).__name__}: {err})") from None
    if len(length_probs) != tok.max_letters + 1 or not all(math.isfinite(p) and p >= 0 for p in length_probs):
        raise bad(f"its length model is not a probability per length 0..{tok.max_letters}")
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
    return length_probs, rng_state, steps


# Let there be a run: the command line, and main() that ties the sections together
def whole_number(minimum):
    """An argparse type: a whole number no smaller than minimum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value
    return parse


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage plus error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def make_parser():
    parser = OneLineParser(
        prog='microdiffusion.py',
        description='Train a tiny masked diffusion model on names and sample new ones. '
                    'Names are read one per line; surrounding spaces are stripped, letters are '
                    'lower-cased, blank lines skipped and names longer than 15 characters skipped '
                    '(and counted). The vocabulary is every character left in the data.')
    parser.add_argument('--input', default=None, metavar='PATH',
                        help='text file with one name per line (default: input.txt, downloaded when missing)')
    parser.add_argument('--num-steps', metavar='N', type=whole_number(1), default=None, help=f'training steps (default {num_steps})')
    parser.add_argument('--batch-size', metavar='B', type=whole_number(1), default=None, help=f'names per training step (default {batch_size})')
    parser.add_argument('--workers', metavar='N', type=whole_number(1), default=None,
                        help='processes that share the names of each step and of the evaluation; 1 starts none '
                             '(default: one per core; under PyPy 1)')
    parser.add_argument('--num-samples', metavar='N', type=whole_number(0), default=20, help='names to print after training; 0 trains only (default 20)')
    parser.add_argument('--seed', metavar='N', type=int, default=42, help='seed of the one random generator (default 42)')
    parser.add_argument('--denoise-steps', metavar='N', type=whole_number(1), default=64, help='denoising steps per sample (default 64)')
    parser.add_argument('--sampler', choices=SAMPLERS, default='confidence', help='how letters are drawn and which positions keep them: confidence (default) or random; see the README')
    parser.add_argument('--template', metavar='T', default='_*', help="letters to keep, '_' for one letter to choose, trailing '*' for any more, the length drawn (default '_*')")
    parser.add_argument('--trace', action='store_true', help='print how the first sample emerges, step by step')
    parser.add_argument('--eval-names', metavar='N', type=whole_number(0), default=1000, help='held-out names for the NELBO estimate; 0 skips it (default 1000, all of them)')
    parser.add_argument('--sample-stats', type=whole_number(0), default=0, metavar='N', help='draw N more samples and print their statistics (default 0: off)')
    parser.add_argument('--save', metavar='PATH', help='after training, save the model to PATH (one JSON file)')
    parser.add_argument('--load', metavar='PATH', help='do not train: load the model saved at PATH (same --input and --seed)')
    return parser


def format_seconds(seconds):
    return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def prepare(path, seed, download=False):
    """Data, tokenizer, split, length model and fresh weights, all drawn from one generator
    seeded once."""
    rng = random.Random(seed)  # the one generator of data order, weights, noise and samples
    if download and not os.path.exists(path):
        print(f"{path} is missing: downloading it from {DATA_URL}")
        download_names(path)
    names, too_long = load_names(path, block_size - 1)
    tok = Tokenizer(names, block_size)
    rng.shuffle(names)
    n_heldout = min(1000, len(names) // 10)  # 1,000 names, or a tenth of a small file
    heldout_names, train_names = names[:n_heldout], names[n_heldout:]
    length_probs = length_model(train_names, tok.max_letters)
    state_dict = init_params(tok.vocab_size, rng)
    return rng, tok, train_names, heldout_names, length_probs, state_dict, too_long


def print_trace(trace, tok):
    print("--- how sample 1 emerged ('_' is MASK, '.' is END) ---")
    print(" step      t  temp  canvas")
    for step, t, temperature, canvas in trace:
        temp_text = '    -' if temperature is None else f"{temperature:5.2f}"
        print(f"{step:5d}  {t:.3f} {temp_text}  {tok.show(canvas)}")


def print_sample_stats(stats, sampler):
    print(f"--- statistics of {stats['n']:,} samples ({sampler} sampler) ---")
    print(f"distinct {stats['distinct']:.1%} | in training set {stats['in_train']:.1%} | "
          f"held out {stats['in_heldout']:.1%} | new {stats['new']:.1%} | empty {stats['empty']:.1%}")
    print(f"length histogram, total-variation distance from the training names: {stats['length_tv']:.3f}")
    print("length  samples  training names")
    for length in sorted(set(stats['sample_hist']) | set(stats['data_hist'])):
        print(f"{length:6d}  {stats['sample_hist'].get(length, 0):7.1%}  {stats['data_hist'].get(length, 0):7.1%}")


def train_with_progress(args, progress, train_names, tok, state_dict, rng, workers):
    """train(), with one progress line per 100 steps (rewritten in place on a terminal)."""
    in_place = sys.stdout.isatty()
    start = time.time()
    recent = []
    def report(step, loss):
        progress['step'] = step
        recent.append(loss)
        del recent[:-100]
        if in_place or step == 1 or step % 100 == 0 or step == args.num_steps:
            elapsed = time.time() - start
            left = elapsed / step * (args.num_steps - step)
            line = (f"step {step:5d} / {args.num_steps} | loss {loss:.4f} | mean of last {len(recent):3d} "
                    f"{sum(recent) / len(recent):.4f} | {format_seconds(elapsed):>7} elapsed | {format_seconds(left):>7} left")
            print('\r' + line if in_place else line, end='\n' if not in_place or step == args.num_steps else '', flush=True)
    train(train_names, tok, state_dict, args.num_steps, rng, args.batch_size, report, workers)


def run(args, progress):
    """The whole program; progress['step'] tells main() how far training got."""
    if args.load and (args.num_steps or args.batch_size or args.save):
        flag = '--num-steps' if args.num_steps else '--batch-size' if args.batch_size else '--save'
        raise UserError(f"{flag} is about training, and --load does not train; leave it out")
    args.num_steps, args.batch_size = args.num_steps or num_steps, args.batch_size or batch_size
    names_path = args.input or 'input.txt'
    rng, tok, train_names, heldout_names, length_probs, state_dict, too_long = prepare(
        names_path, args.seed, download=args.input is None)
    parse_template(args.template, tok)  # a bad template fails now, not after training
    if args.save:
        check_writable(args.save)  # and a model that cannot be saved, too

    print(f"names: {len(train_names) + len(heldout_names):,} "
          f"({len(train_names):,} for training, {len(heldout_names):,} held out)")
    if too_long:
        print(f"skipped {too_long:,} names longer than {tok.max_letters} characters")
    print(f"vocabulary: {tok.vocab_size} tokens ({len(tok.chars)} characters, MASK and END)")
    print(f"parameters: {len(parameters(state_dict)):,}")

    # worker processes, started once, share the names of each training step (when the batch has
    # more than one) and the held-out names of the evaluation. Under PyPy a step is so fast that
    # sending the weights costs more than a second core saves, and every process carries its own
    # JIT (about 150 MB): there the default is one process
    default_workers = 1 if sys.implementation.name == 'pypy' else os.cpu_count() or 1
    n_workers = args.workers or default_workers
    workers = start_workers(n_workers, tok)
    try:
        if args.load:
            length_probs, rng_state, (args.num_steps, args.batch_size, lr) = load_model(
                args.load, tok, args, file_sha256(names_path), state_dict)
            rng.setstate(rng_state)  # the generator as training left it: the same samples follow
            progress['step'] = args.num_steps
            print(f"loaded {args.load}: {args.num_steps:,} steps of {args.batch_size} names, learning rate {lr:g}")
        else:
            train_with_progress(args, progress, train_names, tok, state_dict, rng,
                                workers if min(n_workers, args.batch_size) > 1 else None)
            if args.save:
                save_model(args.save, tok, state_dict, length_probs, rng, args, file_sha256(names_path))
                print(f"saved the model to {args.save} ({os.path.getsize(args.save) / 1024:,.0f} KiB)")
        weights = as_floats(state_dict)

        if args.eval_names:
            eval_names = heldout_names[:args.eval_names]
            if not eval_names:
                print("held-out NELBO: skipped, too few names to hold any out (it takes 10 or more)")
            else:
                eval_rng = random.Random(args.seed + 1)  # its own generator: evaluating never changes the samples
                per_char, stderr = heldout_nelbo(eval_names, tok, weights, length_probs, eval_rng,
                                                 nelbos=workers.nelbos if workers else None)
                baseline = context_free_nll(train_names, eval_names, tok, length_probs)
                print(f"held-out NELBO: {per_char:.3f} ± {stderr:.3f} nats/char ({per_char / math.log(2):.3f} bits/char) "
                      f"on {len(eval_names):,} names never trained on")
                print(f"  without context (the same lengths, one letter distribution per position): "
                      f"{baseline:.3f} nats/char on the same names")
    finally:
        if workers:
            workers.close()

    # training reads the names in order, so it has seen the first num_steps * batch_size of them
    trained_on = set(train_names[:args.num_steps * args.batch_size])
    real_names = set(train_names) | set(heldout_names)
    if args.num_samples:
        print(f"--- {args.num_samples} {'sample' if args.num_samples == 1 else 'samples'} "
              f"({args.sampler} sampler, {args.denoise_steps} denoising steps) ---")
        samples = []
        for n in range(1, args.num_samples + 1):
            name, trace = sample(tok, weights, length_probs, rng, args.denoise_steps, args.sampler, args.template)
            if n == 1:
                first_trace = trace
            mark = '  (trained on)' if name in trained_on else '  (real, never trained on)' if name in real_names else ''
            print(f"sample {n:2d}: {name}{mark}")
            samples.append(name)
        trained, unseen = count_known(samples, trained_on, real_names)
        print(f"{len(samples) - trained - unseen} new, {trained} the model was trained on, "
              f"{unseen} real {'name' if unseen == 1 else 'names'} it never saw")
        if args.trace:
            print_trace(first_trace, tok)

    if args.sample_stats:
        samples = [sample(tok, weights, length_probs, rng, args.denoise_steps, args.sampler, args.template)[0]
                   for _ in range(args.sample_stats)]
        print_sample_stats(sample_stats(samples, train_names, heldout_names), args.sampler)


def main(argv=None):
    args = make_parser().parse_args(argv)
    progress = {'step': 0}
    try:
        run(args, progress)
    except UserError as err:
        print(f"microdiffusion.py: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if sys.stdout.isatty():
            print()  # end the progress line that was being rewritten in place
        where = ("after loading the model" if args.load else f"at training step {progress['step']} of {args.num_steps}"
                 if progress['step'] < args.num_steps else "after training")
        print(f"microdiffusion.py: interrupted {where}; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left early (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
