"""The model, its loss and its training pieces: gradients, invariants and hand computations."""
import math
import os
import random
import statistics
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import microdiffusion as md
import runs
from microdiffusion import Value
from test_cli import main_in

NAMES = ['emma', 'olivia', 'ava', 'isabella', 'sophia', 'mia', 'zoe', 'quinn', 'xavier', 'jakob']


FOLDER = tempfile.TemporaryDirectory()


def names_file(names):
    path = os.path.join(FOLDER.name, 'names.txt')
    with open(path, 'w') as f:
        f.write('\n'.join(names))
    return path


def train_by_main(names, steps, batch_size):
    """main()'s training loop, in this process: the training names in the order it reads them,
    the tokenizer, and every step's loss."""
    losses, real_train = [], md.train
    def watching(*args):
        losses[:] = real_train(*args)
        return losses
    path = names_file(names)
    with mock.patch.object(md, 'train', watching):
        code, _, stderr = main_in(FOLDER.name, ['--input', path, '--num-steps', str(steps), '--batch-size',
                                               str(batch_size), '--workers', '1', '--eval-names', '0',
                                               '--num-samples', '0'])
    assert code == 0, stderr
    data = runs.split(path, 42)
    return data.train_names, md.Tokenizer(data.names), losses


def setup_model(seed=0):
    names = list(NAMES)
    tok = md.Tokenizer(names)
    state_dict = md.init_params(tok.vocab_size, random.Random(seed))
    return names, tok, state_dict


class TestModel(unittest.TestCase):
    def test_vocabulary_and_parameter_count(self):
        tok = md.Tokenizer(['abcdefghijklm', 'nopqrstuvwxyz'])
        self.assertEqual(tok.vocab_size, 28)
        self.assertEqual((tok.MASK, tok.END), (26, 27))
        state_dict = md.init_params(tok.vocab_size, random.Random(0))
        # wte 28x16 (tied: also the output layer), wpe 16x16, per layer 4 x 16x16 + 64x16 + 16x64
        self.assertEqual(len(md.parameters(state_dict)), 28 * 16 + 16 * 16 + 2 * (4 * 16 * 16 + 2 * 64 * 16))
        self.assertEqual(len({id(p) for p in md.parameters(state_dict)}), 6848)
        self.assertNotIn('lm_head', state_dict)

    def test_canvas_is_the_letters_then_end(self):
        _, tok, _ = setup_model()
        ids = tok.encode('mia')
        self.assertEqual(ids, [tok.stoi['m'], tok.stoi['i'], tok.stoi['a'], tok.END])
        self.assertEqual(tok.decode(ids), 'mia')
        self.assertEqual(tok.decode([tok.MASK, tok.stoi['a'], tok.END]), '_a')
        self.assertEqual(md.max_letters, md.block_size - 1)  # the longest name leaves room for END
        self.assertEqual(len(tok.encode('x' * md.max_letters)), md.block_size)

    def test_training_runs_the_model_over_the_name_and_end_only(self):
        seen = []
        real_predictor = md.mask_predictor
        def watching_predictor(canvas, tok, weights, positions=None):
            if isinstance(weights['wte'][0][0], Value):  # training, not the names it shows
                seen.append((list(canvas), positions))
            return real_predictor(canvas, tok, weights, positions)
        with mock.patch.object(md, 'mask_predictor', watching_predictor):
            train_names, tok, _ = train_by_main(NAMES, 9, 1)
        self.assertEqual(len(seen), len(train_names))
        for name, (canvas, positions) in zip(train_names, seen):
            self.assertEqual(len(canvas), len(name) + 1)
            self.assertEqual(canvas[-1], tok.END)  # END is always visible
            self.assertGreater(len(positions), 0)
            self.assertEqual(positions, [pos for pos, token in enumerate(canvas) if token == tok.MASK])
            for pos, token in enumerate(canvas[:-1]):  # every other token is MASK or the name's letter
                self.assertIn(token, (tok.MASK, tok.stoi[name[pos]]))

    def test_length_model_by_hand(self):
        # lengths 1 x1, 3 x2, add-one over 1..4: counts 2, 1, 3, 1 of 7
        with mock.patch.object(md, 'max_letters', 4):
            probs = md.length_model(['a', 'abc', 'xyz'])
        self.assertEqual(len(probs), 5)
        self.assertEqual(probs[0], 0.0)
        for got, want in zip(probs[1:], [2 / 7, 1 / 7, 3 / 7, 1 / 7]):
            self.assertAlmostEqual(got, want, places=15)

    def test_draw_length_follows_the_histogram_restricted_to_the_minimum(self):
        probs = [0.0, 0.1, 0.2, 0.3, 0.4]
        rng = random.Random(4)
        for min_letters in (1, 3):
            draws = [md.draw_length(probs, rng, min_letters) for _ in range(20000)]
            total = sum(probs[min_letters:])
            for n_letters in range(1, 5):
                want = probs[n_letters] / total if n_letters >= min_letters else 0.0
                self.assertAlmostEqual(draws.count(n_letters) / len(draws), want, delta=0.012,
                                       msg=f"L={n_letters}, at least {min_letters}")

    def test_full_loss_gradient_against_finite_differences(self):
        names, tok, state_dict = setup_model(seed=1)
        rng = random.Random(5)
        clean = tok.encode('isabella')
        noisy = md.corrupt(clean, 0.6, tok, rng)
        masked = [pos for pos, token in enumerate(noisy) if token == tok.MASK]
        loss = md.masked_loss(md.mask_predictor(noisy, tok, state_dict, masked), clean, masked)
        loss.backward()
        weights = md.as_floats(state_dict)
        def loss_at(name, r, c, value):
            saved = weights[name][r][c]
            weights[name][r][c] = value
            result = md.masked_loss(md.mask_predictor(noisy, tok, weights), clean, masked)
            weights[name][r][c] = saved
            return result
        checked = 0
        for name, matrix in state_dict.items():  # every weight matrix, three entries each
            rows = [clean[0], tok.MASK, tok.END] if name == 'wte' else [rng.randrange(len(matrix)) for _ in range(3)]
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
        canvas[2] = canvas[5] = tok.MASK
        graph_logits = md.mask_predictor(canvas, tok, state_dict)
        float_logits = md.mask_predictor(canvas, tok, md.as_floats(state_dict))
        for graph_row, float_row in zip(graph_logits, float_logits):
            for g, f in zip(graph_row, float_row):
                self.assertAlmostEqual(g.data, f, delta=1e-12)

    def test_asking_for_some_positions_changes_nothing_at_them(self):
        names, tok, state_dict = setup_model(seed=6)
        weights = md.as_floats(state_dict)
        canvas = tok.encode('jakob')
        canvas[1] = canvas[4] = tok.MASK
        full = md.mask_predictor(canvas, tok, weights)
        some = md.mask_predictor(canvas, tok, weights, [1, 4])
        for pos in range(len(canvas)):
            self.assertEqual(some[pos], full[pos] if pos in (1, 4) else None)

    def test_attention_is_bidirectional(self):
        names, tok, state_dict = setup_model(seed=3)
        weights = md.as_floats(state_dict)
        canvas = [tok.MASK] * md.max_letters + [tok.END]
        before = md.mask_predictor(canvas, tok, weights)[0]
        canvas[-2] = tok.stoi['z']  # change only the last letter
        after = md.mask_predictor(canvas, tok, weights)[0]
        self.assertGreater(max(abs(a - b) for a, b in zip(before, after)), 1e-6)

    def test_only_letters_are_predicted_read_out_through_wte(self):
        names, tok, state_dict = setup_model(seed=4)
        weights = md.as_floats(state_dict)
        canvas = [tok.MASK] * 6 + [tok.END]
        logits = md.mask_predictor(canvas, tok, weights)
        self.assertTrue(all(len(row) == len(tok.chars) for row in logits))  # never MASK or END
        # weight tying: changing the output row of a letter changes only that letter's logits
        weights['wte'][tok.stoi['q']] = [w + 0.5 for w in weights['wte'][tok.stoi['q']]]
        canvas_without_q = md.mask_predictor(canvas, tok, weights)
        for before, after in zip(logits, canvas_without_q):
            changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
            self.assertEqual(changed, [tok.stoi['q']])

    def test_loss_is_mean_over_exactly_the_masked_positions(self):
        names, tok, state_dict = setup_model(seed=5)
        weights = md.as_floats(state_dict)
        clean = tok.encode('sophia')
        noisy = list(clean)
        masked = [0, 3, 5]  # three of the six letters
        for pos in masked:
            noisy[pos] = tok.MASK
        logits = md.mask_predictor(noisy, tok, weights)
        by_hand = 0.0
        for pos in masked:
            exps = [math.exp(z) for z in logits[pos]]
            by_hand += -math.log(exps[clean[pos]] / sum(exps))
        self.assertAlmostEqual(md.masked_loss(logits, clean, masked), by_hand / 3, places=10)
        # changing the logits of an unmasked position changes nothing
        logits[1] = [z + 5.0 * i for i, z in enumerate(logits[1])]
        self.assertAlmostEqual(md.masked_loss(logits, clean, masked), by_hand / 3, places=10)

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

    def test_corrupt_masks_letters_at_rate_t_at_least_one_and_never_end(self):
        rng = random.Random(7)
        tok = md.Tokenizer(['abcdefghijklmnopqrstuvwxyz'])
        clean = tok.encode('abcdefghijklmno')  # 15 letters, then END
        noisy_rows = [md.corrupt(clean, 0.3, tok, rng) for _ in range(5000)]
        self.assertTrue(all(noisy[-1] == tok.END and len(noisy) == 16 for noisy in noisy_rows))
        rate = statistics.mean(noisy.count(tok.MASK) for noisy in noisy_rows) / 15
        self.assertAlmostEqual(rate, 0.3, delta=0.01)
        for noisy in (md.corrupt(clean, 1.0, tok, rng) for _ in range(50)):
            self.assertEqual(noisy, [tok.MASK] * 15 + [tok.END])
        for _ in range(200):
            noisy = md.corrupt(clean, 1e-9, tok, rng)
            self.assertEqual(noisy.count(tok.MASK), 1)
            self.assertEqual([x for x in noisy if x != tok.MASK], [x for x in clean if x in noisy])
        # one letter: it is the one
        self.assertEqual(md.corrupt(tok.encode('e'), 1e-9, tok, rng), [tok.MASK, tok.END])

    def test_adam_step_by_hand(self):
        p = Value(1.0)
        optimizer = md.Adam([p])
        optimizer.step([0.5], 0.01)
        # first step: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps)
        self.assertAlmostEqual(p.data, 1.0 - 0.01 * 0.5 / (0.5 + 1e-8), places=12)
        optimizer.step([-0.25], 0.01)
        m = 0.85 * (0.15 * 0.5) + 0.15 * -0.25
        v = 0.99 * (0.01 * 0.25) + 0.01 * 0.0625
        want = 1.0 - 0.01 * 0.5 / (0.5 + 1e-8) - 0.01 * (m / (1 - 0.85 ** 2)) / ((v / (1 - 0.99 ** 2)) ** 0.5 + 1e-8)
        self.assertAlmostEqual(p.data, want, places=12)

    def test_training_lowers_the_loss_and_is_reproducible(self):
        runs = [train_by_main(NAMES, 80, 1)[2] for _ in range(2)]
        self.assertEqual(runs[0], runs[1])
        self.assertEqual(len(runs[0]), 80)
        self.assertLess(statistics.mean(runs[0][-20:]), statistics.mean(runs[0][:20]))

    def test_a_loss_that_is_not_finite_stops_training(self):
        real_init = md.init_params
        def broken_init(vocab_size, rng):
            state_dict = real_init(vocab_size, rng)
            state_dict['layer1.mlp_fc2'][0][0].data = float('inf')
            return state_dict
        with mock.patch.object(md, 'init_params', broken_init):
            code, stdout, stderr = main_in(FOLDER.name, ['--input', names_file(NAMES), '--num-steps', '5'])
        self.assertEqual(code, 1)
        self.assertEqual(stderr, 'microdiffusion.py: error: the gradient is not finite at step 1: '
                                 'the training diverged\n')


if __name__ == '__main__':
    unittest.main()
