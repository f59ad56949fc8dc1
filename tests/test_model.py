"""The model, its loss and its training pieces: gradients, invariants and hand computations."""
import math
import os
import random
import statistics
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import microdiffusion as md
from microdiffusion import Value

NAMES = ['emma', 'olivia', 'ava', 'isabella', 'sophia', 'mia', 'zoe', 'quinn', 'xavier', 'jakob']


def setup_model(seed=0):
    names = list(NAMES)
    tok = md.Tokenizer(names, md.block_size)
    state_dict = md.init_params(tok.vocab_size, random.Random(seed))
    return names, tok, state_dict


class TestModel(unittest.TestCase):
    def test_vocabulary_and_parameter_count(self):
        tok = md.Tokenizer(['abcdefghijklm', 'nopqrstuvwxyz'], md.block_size)
        self.assertEqual(tok.vocab_size, 28)
        self.assertEqual((tok.MASK, tok.PAD), (26, 27))
        state_dict = md.init_params(tok.vocab_size, random.Random(0))
        # wte 28x16 (tied: also the output layer), wpe 16x16, per layer 4 x 16x16 + 64x16 + 16x64
        self.assertEqual(28 * 16 + 16 * 16 + 2 * (4 * 16 * 16 + 2 * 64 * 16), 6848)
        self.assertEqual(len(md.parameters(state_dict)), 6848)
        self.assertEqual(len({id(p) for p in md.parameters(state_dict)}), 6848)
        self.assertNotIn('lm_head', state_dict)

    def test_encode_decode(self):
        _, tok, _ = setup_model()
        ids = tok.encode('mia')
        self.assertEqual(len(ids), md.block_size)
        self.assertEqual(ids[3:], [tok.PAD] * 13)
        self.assertEqual(tok.decode(ids), 'mia')
        self.assertEqual(tok.decode(ids[:3] + [tok.PAD, tok.stoi['a']] + ids[5:]), 'mia')  # stops at the first PAD
        self.assertEqual(tok.show([tok.MASK, tok.stoi['a'], tok.PAD]), '_a.')

    def test_full_loss_gradient_against_finite_differences(self):
        names, tok, state_dict = setup_model(seed=1)
        rng = random.Random(5)
        clean = tok.encode('isabella')
        noisy = md.corrupt(clean, 0.6, rng, tok.MASK)
        loss = md.masked_loss(md.mask_predictor(noisy, state_dict), clean, noisy, tok.MASK)
        loss.backward()
        weights = md.as_floats(state_dict)
        def loss_at(name, r, c, value):
            saved = weights[name][r][c]
            weights[name][r][c] = value
            result = md.masked_loss(md.mask_predictor(noisy, weights), clean, noisy, tok.MASK)
            weights[name][r][c] = saved
            return result
        checked = 0
        for name, matrix in state_dict.items():  # every weight matrix, three entries each
            rows = [clean[0], tok.MASK, tok.PAD] if name == 'wte' else [rng.randrange(len(matrix)) for _ in range(3)]
            for r in rows:
                c = rng.randrange(len(matrix[r]))
                p, h = matrix[r][c], 1e-5
                numeric = (loss_at(name, r, c, p.data + h) - loss_at(name, r, c, p.data - h)) / (2 * h)
                self.assertAlmostEqual(p.grad, numeric, delta=1e-6 + 1e-4 * abs(numeric), msg=f"{name}[{r}][{c}]")
                checked += 1
        self.assertGreaterEqual(checked, 20)

    def test_float_pass_matches_graph_pass(self):
        names, tok, state_dict = setup_model(seed=2)
        canvas = tok.encode('olivia')
        canvas[2] = canvas[9] = tok.MASK
        graph_logits = md.mask_predictor(canvas, state_dict)
        float_logits = md.mask_predictor(canvas, md.as_floats(state_dict))
        for graph_row, float_row in zip(graph_logits, float_logits):
            for g, f in zip(graph_row, float_row):
                self.assertAlmostEqual(g.data, f, delta=1e-12)

    def test_asking_for_some_positions_changes_nothing_at_them(self):
        names, tok, state_dict = setup_model(seed=6)
        weights = md.as_floats(state_dict)
        canvas = tok.encode('quinn')
        canvas[1] = canvas[4] = canvas[11] = tok.MASK
        full = md.mask_predictor(canvas, weights)
        some = md.mask_predictor(canvas, weights, [1, 4, 11])
        for pos in range(md.block_size):
            self.assertEqual(some[pos], full[pos] if pos in (1, 4, 11) else None)

    def test_attention_is_bidirectional(self):
        names, tok, state_dict = setup_model(seed=3)
        weights = md.as_floats(state_dict)
        canvas = [tok.MASK] * md.block_size
        before = md.mask_predictor(canvas, weights)[0]
        canvas[-1] = tok.stoi['z']  # change only the last position
        after = md.mask_predictor(canvas, weights)[0]
        self.assertGreater(max(abs(a - b) for a, b in zip(before, after)), 1e-6)

    def test_mask_is_never_predicted(self):
        names, tok, state_dict = setup_model(seed=4)
        logits = md.mask_predictor([tok.MASK] * md.block_size, md.as_floats(state_dict))
        for row in logits:
            self.assertLess(md.softmax(row)[tok.MASK], 1e-100)

    def test_loss_is_mean_over_exactly_the_masked_positions(self):
        names, tok, state_dict = setup_model(seed=5)
        weights = md.as_floats(state_dict)
        clean = tok.encode('zoe')
        noisy = list(clean)
        masked = [1, 3, 12]  # a letter, the first PAD and a later PAD: PAD stays in the loss
        for pos in masked:
            noisy[pos] = tok.MASK
        logits = md.mask_predictor(noisy, weights)
        by_hand = 0.0
        for pos in masked:
            exps = [math.exp(z) for z in logits[pos]]  # MASK's logit is -1e6: exp gives exactly 0
            by_hand += -math.log(exps[clean[pos]] / sum(exps))
        self.assertAlmostEqual(md.masked_loss(logits, clean, noisy, tok.MASK), by_hand / 3, places=10)
        # changing the logits of an unmasked position changes nothing
        logits[0] = [z + 5.0 * i for i, z in enumerate(logits[0])]
        self.assertAlmostEqual(md.masked_loss(logits, clean, noisy, tok.MASK), by_hand / 3, places=10)

    def test_noise_level_is_log_uniform(self):
        rng = random.Random(6)
        levels = [md.noise_level(rng) for _ in range(20000)]
        self.assertGreaterEqual(min(levels), 0.2)
        self.assertLessEqual(max(levels), 1.0)
        self.assertAlmostEqual(statistics.median(levels), math.sqrt(0.2), delta=0.01)
        # log t is uniform: each fifth of [log 0.2, 0] holds a fifth of the draws
        fifths = [0] * 5
        for t in levels:
            fifths[min(4, int((math.log(t) - math.log(0.2)) / -math.log(0.2) * 5))] += 1
        for n in fifths:
            self.assertAlmostEqual(n / len(levels), 0.2, delta=0.015)

    def test_corrupt_masks_at_rate_t_and_at_least_one(self):
        rng = random.Random(7)
        clean = list(range(16))
        rate = statistics.mean(md.corrupt(clean, 0.3, rng, 99).count(99) for _ in range(5000)) / 16
        self.assertAlmostEqual(rate, 0.3, delta=0.01)
        for _ in range(200):
            noisy = md.corrupt(clean, 1e-9, rng, 99)
            self.assertEqual(noisy.count(99), 1)
            self.assertEqual([x for x in noisy if x != 99], [x for x in clean if x in noisy])

    def test_adam_step_by_hand(self):
        p = Value(1.0)
        p.grad = 0.5
        optimizer = md.Adam([p])
        optimizer.step(0.01)
        # first step: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps)
        self.assertAlmostEqual(p.data, 1.0 - 0.01 * 0.5 / (0.5 + 1e-8), places=12)
        self.assertEqual(p.grad, 0.0)
        p.grad = -0.25
        optimizer.step(0.01)
        m = 0.85 * (0.15 * 0.5) + 0.15 * -0.25
        v = 0.99 * (0.01 * 0.25) + 0.01 * 0.0625
        want = 1.0 - 0.01 * 0.5 / (0.5 + 1e-8) - 0.01 * (m / (1 - 0.85 ** 2)) / ((v / (1 - 0.99 ** 2)) ** 0.5 + 1e-8)
        self.assertAlmostEqual(p.data, want, places=12)

    def test_training_lowers_the_loss_and_is_reproducible(self):
        names, tok, _ = setup_model()
        runs = []
        for _ in range(2):
            state_dict = md.init_params(tok.vocab_size, random.Random(8))
            runs.append(md.train(names * 4, tok, state_dict, 60, random.Random(9)))
        self.assertEqual(runs[0], runs[1])
        self.assertLess(statistics.mean(runs[0][-20:]), statistics.mean(runs[0][:20]))

    def test_a_loss_that_is_not_finite_stops_training(self):
        names, tok, state_dict = setup_model()
        state_dict['layer1.mlp_fc2'][0][0].data = float('inf')
        with self.assertRaises(md.UserError) as caught:
            md.train(names, tok, state_dict, 5, random.Random(0))
        self.assertIn('at step 1', str(caught.exception))


if __name__ == '__main__':
    unittest.main()
