"""The model, its loss, the sampler's ranking and schedule, and the first training steps, each
against an oracle that owes nothing to the file's own code: the transformer written out again
on plain lists, a random source whose draws the test chooses, numbers worked out by hand."""
import contextlib
import io
import math
import os
import random
import sys
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import microdiffusion as md

NAMES = ['emma', 'olivia', 'ava', 'isabella', 'sophia', 'mia', 'zoe', 'quinn', 'xavier', 'jakob']
TOK = md.Tokenizer(NAMES)


def big_weights(seed):
    """Weights 6 times the initial scale: a dropped residual or a missing position changes
    every logit by far more than rounding does."""
    rng = random.Random(seed)
    return {name: [[rng.gauss(0, 0.5) for _ in row] for row in matrix]
            for name, matrix in md.as_floats(md.init_params(TOK.vocab_size, rng)).items()}


def reference_logits(canvas, w, n_layer=2, n_head=4):
    """The bidirectional transformer of the README, written out again on plain lists: token
    plus position embedding, RMSNorm; per layer, pre-norm multi-head attention over every
    position with scores q.k / sqrt(head_dim), a residual, a pre-norm ReLU MLP, a residual;
    then the letters' rows of wte as the output layer."""
    def matvec(matrix, x):
        return [sum(a * b for a, b in zip(row, x)) for row in matrix]
    def norm(x):
        return [v / math.sqrt(sum(u * u for u in x) / len(x) + 1e-5) for v in x]
    def softmax(z):
        exps = [math.exp(v - max(z)) for v in z]
        return [e / sum(exps) for e in exps]
    head_dim = len(w['wte'][0]) // n_head
    x = [norm([a + b for a, b in zip(w['wte'][token], w['wpe'][pos])]) for pos, token in enumerate(canvas)]
    for layer in range(n_layer):
        m = {name.split('.')[1]: value for name, value in w.items() if name.startswith(f'layer{layer}.')}
        h = [norm(v) for v in x]
        q, k, v = ([matvec(m[name], hi) for hi in h] for name in ('attn_wq', 'attn_wk', 'attn_wv'))
        out = []
        for i in range(len(canvas)):
            heads = []
            for head in range(n_head):
                cols = range(head * head_dim, (head + 1) * head_dim)
                weights = softmax([sum(q[i][c] * k[j][c] for c in cols) / math.sqrt(head_dim)
                                   for j in range(len(canvas))])
                heads += [sum(weights[j] * v[j][c] for j in range(len(canvas))) for c in cols]
            a = [s + r for s, r in zip(matvec(m['attn_wo'], heads), x[i])]
            mlp = matvec(m['mlp_fc2'], [max(0.0, s) for s in matvec(m['mlp_fc1'], norm(a))])
            out.append([s + r for s, r in zip(mlp, a)])
        x = out
    return [matvec(w['wte'][:len(TOK.chars)], xi) for xi in x]


class TestAgainstAReference(unittest.TestCase):
    def test_logits_match_a_transformer_written_out_again(self):
        rng = random.Random(3)
        for seed in range(3):
            w = big_weights(seed)
            for name in ('mia', 'isabella', 'xavier'):
                canvas = [TOK.MASK if rng.random() < 0.5 else token for token in TOK.encode(name)[:-1]] + [TOK.END]
                want = reference_logits(canvas, w)
                got = md.mask_predictor(canvas, TOK, w)
                for pos in range(len(canvas)):
                    for a, b in zip(got[pos], want[pos]):
                        self.assertAlmostEqual(a, b, delta=1e-9 * max(1.0, abs(b)), msg=(seed, name, pos))

    def test_a_training_step_loss_is_the_mean_cross_entropy_at_the_hidden_letters(self):
        w = big_weights(7)
        state_dict = {name: [[md.Value(x) for x in row] for row in matrix] for name, matrix in w.items()}
        clean = TOK.encode('sophia')
        noisy = [TOK.MASK, clean[1], TOK.MASK, clean[3], clean[4], TOK.MASK, TOK.END]
        logits = reference_logits(noisy, w)
        want = sum(math.log(sum(math.exp(z) for z in logits[pos])) - logits[pos][clean[pos]]
                   for pos in (0, 2, 5)) / 3
        loss, grad = md.name_gradient(clean, noisy, TOK, state_dict)
        self.assertAlmostEqual(loss, want, delta=1e-9)
        # and the gradient of one weight, by a central difference of the reference
        for name, row, col in (('wpe', 2, 5), ('layer1.mlp_fc2', 3, 40), ('layer0.attn_wq', 1, 1)):
            def loss_at(delta):
                shifted = {key: [list(r) for r in matrix] for key, matrix in w.items()}
                shifted[name][row][col] += delta
                z = reference_logits(noisy, shifted)
                return sum(math.log(sum(math.exp(v) for v in z[pos])) - z[pos][clean[pos]] for pos in (0, 2, 5)) / 3
            index = [(key, r, c) for key, m in w.items() for r in range(len(m)) for c in range(len(m[0]))
                     ].index((name, row, col))  # parameters() order: matrix by matrix, row by row
            numeric = (loss_at(1e-6) - loss_at(-1e-6)) / 2e-6
            self.assertAlmostEqual(grad[index], numeric, delta=1e-6, msg=name)


class ScriptedRandom:
    """A stand-in for random.Random whose letter draws are always each position's likeliest
    letter and whose Gumbel noises are the test's: -log(expovariate(1)) is the next of `gumbels`."""
    def __init__(self, gumbels):
        self.gumbels = iter(gumbels)

    def choices(self, population, weights):
        return [max(population, key=lambda i: weights[i])]

    def expovariate(self, rate):
        return math.exp(-next(self.gumbels))


class TestTheRanking(unittest.TestCase):
    """Two hidden letters, 64 steps: the first is revealed at step 30, at t = cos(29 pi / 128)
    = 0.7604 (2 t falls below 1.5 after it), the second at step 43. At position 0 the model gives
    its likeliest letter p = 0.9, at position 1 p = 0.5: confidences log 0.9 = -0.105 and
    log 0.5 = -0.693."""

    def first_revealed(self, sampler, gumbels):
        def model(canvas, tok, weights, positions=None):  # p = 0.9 and 0.5 for the first letter
            return [[math.log(p)] + [math.log((1 - p) / (len(TOK.chars) - 1))] * (len(TOK.chars) - 1)
                    for p in (0.9, 0.5, 0.5)][:len(canvas)]
        with mock.patch.object(md, 'mask_predictor', model):
            _, trace = md.sample(TOK, None, None, ScriptedRandom(gumbels + [0.0] * 10), 64, sampler,
                                 ([TOK.MASK, TOK.MASK], False))
        step, t, _, canvas = trace[1]
        self.assertEqual((step, round(t, 4)), (30, round(math.cos(math.pi / 2 * 30 / 64), 4)))
        return [pos for pos in (0, 1) if canvas[pos] != TOK.MASK]

    def test_without_noise_the_surest_letter_goes_first(self):
        # priorities -0.105 and -0.693: position 0
        self.assertEqual(self.first_revealed('confidence', [0.0, 0.0]), [0])

    def test_noise_in_proportion_to_t_lets_the_less_sure_go_first(self):
        # a Gumbel draw of 1 at position 1: -0.693 + 1 x 0.7604 x 1 = 0.067 > -0.105. Were the
        # noise scaled by 1 - t, -0.693 + 0.2396 = -0.454 would leave position 0 first
        self.assertEqual(self.first_revealed('confidence', [0.0, 1.0]), [1])
        # a draw of 0.7: -0.693 + 0.532 = -0.161 < -0.105: still position 0
        self.assertEqual(self.first_revealed('confidence', [0.0, 0.7]), [0])

    def test_the_random_sampler_ranks_by_the_noise_alone(self):
        self.assertEqual(self.first_revealed('random', [0.0, 0.5]), [1])  # though less sure
        self.assertEqual(self.first_revealed('random', [0.5, 0.0]), [0])


class TestTheTemperature(unittest.TestCase):
    def test_letters_are_drawn_from_softmax_of_the_logits_over_the_temperature(self):
        # fixed logits 1, 0.5, -0.5, 0, ...: at T the letter c comes with exp(z_c / T) / sum, by hand
        z = [1.0, 0.5, -0.5] + [0.0] * (len(TOK.chars) - 3)
        model = lambda canvas, tok, weights, positions=None: [list(z) for _ in canvas]
        for temperature in (0.5, 2.0):
            with mock.patch.object(md, 'mask_predictor', model), \
                    mock.patch.object(md, 'temperature_start', temperature), \
                    mock.patch.object(md, 'temperature_end', temperature):
                rng, n = random.Random(1), 4000
                letters = [md.sample(TOK, None, None, rng, 1, 'confidence', ([TOK.MASK], False))[0]
                           for _ in range(n)]
            total = sum(math.exp(v / temperature) for v in z)
            for c in range(3):
                p = math.exp(z[c] / temperature) / total
                self.assertAlmostEqual(letters.count(TOK.chars[c]) / n, p,
                                       delta=4 * math.sqrt(p * (1 - p) / n), msg=(temperature, c))


class TestTheSplit(unittest.TestCase):
    def test_the_held_out_names_are_a_random_tenth(self):
        # a name anywhere in the file, first or last, is held out about one time in ten
        names = [f'n{i:03d}' for i in range(200)]
        held = [md.split(names, random.Random(seed))[1] for seed in range(300)]
        self.assertTrue(all(len(h) == 20 for h in held))
        for name in names[:20] + names[-20:]:
            self.assertAlmostEqual(sum(name in h for h in held) / 300, 0.1, delta=0.07, msg=name)


class TestTheSchedule(unittest.TestCase):
    def test_hidden_letters_after_each_step_by_hand(self):
        # 5 letters, 10 steps: 5 cos(pi s / 20) for s = 1..10 is 4.94, 4.76, 4.46, 4.05, 3.54,
        # 2.94, 2.27, 1.55, 0.78, 0.00, rounded
        _, trace = md.sample(TOK, md.as_floats(md.init_params(TOK.vocab_size, random.Random(0))),
                             None, random.Random(1), 10, 'confidence', ([TOK.MASK] * 5, False))
        hidden = {step: canvas.count(TOK.MASK) for step, _, _, canvas in trace}
        after = [hidden.get(step) for step in range(11)]
        for step in range(1, 11):  # the trace lists the steps that revealed something
            after[step] = after[step - 1] if after[step] is None else after[step]
        self.assertEqual(after, [5, 5, 5, 4, 4, 4, 3, 2, 2, 1, 0])


class TestTheLearningRate(unittest.TestCase):
    def test_it_falls_linearly_to_zero(self):
        # 4 steps from 0.014: 0.014, 0.0105, 0.007, 0.0035 (by hand: 0.014 x (1 - (step - 1) / 4))
        rates = []
        class Recording:
            def __init__(self, params):
                pass
            def step(self, grad, lr_t):
                rates.append(lr_t)
        state_dict = md.init_params(TOK.vocab_size, random.Random(0))
        with mock.patch.object(md, 'Adam', Recording), contextlib.redirect_stdout(io.StringIO()):
            md.train(state_dict, NAMES, TOK, md.length_model(NAMES), random.Random(0), 4, 2)
        for got, want in zip(rates, [0.014, 0.0105, 0.007, 0.0035]):
            self.assertAlmostEqual(got, want, delta=1e-15)
        self.assertEqual(len(rates), 4)


class TestTheDefaultRun(unittest.TestCase):
    def test_its_first_two_steps(self):
        # the losses of the default run's first two steps of 8 names (the README's run prints
        # the first, 3.2454): they depend on the names file, the split, the weights' draw, the
        # noise, the model, the loss and one Adam step
        lines, _, _ = md.read_names(os.path.join(os.path.dirname(HERE), 'input.txt'))
        names = list(dict.fromkeys(lines))
        rng = random.Random(md.seed)
        train_names, _ = md.split(names, rng)
        tok = md.Tokenizer(names)
        state_dict = md.init_params(tok.vocab_size, rng)
        with contextlib.redirect_stdout(io.StringIO()):
            losses = md.train(state_dict, train_names, tok, md.length_model(train_names), rng, 2)
        self.assertAlmostEqual(losses[0], 3.245357978217698, delta=1e-12)
        self.assertAlmostEqual(losses[1], 3.36298416407916, delta=1e-12)


if __name__ == '__main__':
    unittest.main()
