"""The sampler's schedule and rules, templates, the trace, the evaluation and the statistics."""
import math
import os
import random
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import microdiffusion as md

NAMES = ['emma', 'olivia', 'ava', 'isabella', 'sophia', 'mia', 'zoe', 'quinn', 'xavier', 'jakob']
TOK = md.Tokenizer(NAMES, md.block_size)
WEIGHTS = md.as_floats(md.init_params(TOK.vocab_size, random.Random(0)))


def canvases_after_each_step(trace, n_steps):
    """The canvas after every step 1..n_steps (the trace only lists steps that changed it)."""
    changed = {step: canvas for step, _, _, canvas in trace}
    canvas, result = changed[0], []
    for step in range(1, n_steps + 1):
        canvas = changed.get(step, canvas)
        result.append(canvas)
    return result


class TestSampler(unittest.TestCase):
    def run_sampler(self, sampler, template='_*', n_steps=64, seed=1):
        return md.sample(TOK, WEIGHTS, random.Random(seed), n_steps, sampler, template)

    def test_schedule_commits_and_output(self):
        for sampler in md.SAMPLERS:
            for n_steps in (64, 10, 1):
                with self.subTest(sampler=sampler, steps=n_steps):
                    name, trace = self.run_sampler(sampler, n_steps=n_steps)
                    n0 = md.block_size
                    previous = trace[0][3]
                    self.assertEqual(previous, [TOK.MASK] * n0)
                    for step, canvas in enumerate(canvases_after_each_step(trace, n_steps), 1):
                        s = math.cos(math.pi / 2 * (1 - (n_steps - step) / n_steps))
                        self.assertEqual(canvas.count(TOK.MASK), round(n0 * s), f"after step {step}")
                        for before, after in zip(previous, canvas):  # committed tokens stay
                            if before != TOK.MASK:
                                self.assertEqual(before, after)
                        previous = canvas
                    self.assertNotIn(TOK.MASK, previous)
                    self.assertEqual(name, TOK.decode(previous))
                    self.assertGreater(len(name), 0)  # the default template asks for a letter first

    def test_the_last_tokens_are_committed_at_the_end(self):
        # with 64 cosine steps, a token is committed in the last step, and after step 16
        # most of the canvas is still masked: the annealed temperature gets to act
        for sampler in md.SAMPLERS:
            _, trace = self.run_sampler(sampler)
            canvases = canvases_after_each_step(trace, 64)
            # round(16 * s) first reaches 0 at step 63: s = sin(pi / 128) there, 16 s = 0.39
            self.assertEqual(trace[-1][0], 63)
            self.assertEqual(canvases[61].count(TOK.MASK), 1)
            self.assertGreaterEqual(canvases[15].count(TOK.MASK), 12)
            model_calls = len(trace) - 1
            self.assertEqual(model_calls, len({step for step, *_ in trace[1:]}))
            self.assertLessEqual(model_calls, md.block_size)  # steps with nothing to commit skip the model

    def test_trace_masked_count_only_falls_and_reaches_zero_at_the_end(self):
        _, trace = self.run_sampler('gumbel')
        counts = [canvas.count(TOK.MASK) for *_, canvas in trace]
        self.assertEqual(counts, sorted(counts, reverse=True))
        self.assertEqual(counts[-1], 0)
        self.assertTrue(all(c > 0 for c in counts[:-1]))
        for step, t, temperature, _ in trace[1:]:
            self.assertAlmostEqual(temperature, 0.4 + 0.4 * t)

    def test_same_seed_same_names(self):
        for sampler in md.SAMPLERS:
            runs = [[self.run_sampler(sampler, seed=seed)[0] for seed in (3, 4, 5)] for _ in range(2)]
            self.assertEqual(runs[0], runs[1])

    def test_templates(self):
        cases = {
            'ma*': lambda name: name.startswith('ma'),
            '____a': lambda name: len(name) == 5 and name.endswith('a'),
            '_a__e*': lambda name: len(name) >= 5 and name[1] == 'a' and name[4] == 'e',
            'zoe': lambda name: name == 'zoe',
        }
        for template, rule in cases.items():
            for sampler in md.SAMPLERS:
                for seed in range(3):
                    with self.subTest(template=template, sampler=sampler, seed=seed):
                        name, trace = self.run_sampler(sampler, template, seed=seed)
                        self.assertTrue(rule(name), name)
                        final = trace[-1][3]
                        body = template.rstrip('*')
                        for pos, ch in enumerate(body):
                            if ch == '_':
                                self.assertNotIn(final[pos], (TOK.PAD, TOK.MASK))  # a letter
                            else:
                                self.assertEqual(final[pos], TOK.stoi[ch])
                        if not template.endswith('*'):
                            self.assertEqual(final[len(body):], [TOK.PAD] * (md.block_size - len(body)))

    def test_bad_templates(self):
        for template in ('', '*', 'a*b', 'ma-*', 'x' * 17, 'é*'):
            with self.subTest(template=template):
                with self.assertRaises(md.UserError):
                    md.parse_template(template, TOK)
        md.parse_template('x' * 16, TOK)
        md.parse_template('x' * 16 + '*', TOK)


class TestEvaluation(unittest.TestCase):
    def test_nelbo_of_a_context_free_model_is_its_exact_log_likelihood(self):
        # if the logits at a position never depend on the canvas, -log p(name) is the sum of the
        # per-position cross-entropies, and the ELBO is tight: sum_k c_k has exactly that mean
        rng = random.Random(0)
        fixed = [[rng.uniform(-2, 2) for _ in range(TOK.vocab_size)] for _ in range(md.block_size)]
        for row in fixed:
            row[TOK.MASK] -= 1e6
        with mock.patch.object(md, 'mask_predictor', lambda canvas, weights, positions=None: fixed):
            clean = TOK.encode('sophia')
            exact = sum(md.cross_entropy(fixed[pos], token) for pos, token in enumerate(clean))
            estimate = md.nelbo('sophia', TOK, None, random.Random(1), repeats=400)
            self.assertAlmostEqual(estimate, exact, delta=0.01 * exact)
            # per character: a name of n letters counts n + 1
            per_char, stderr = md.heldout_nelbo(['sophia', 'sophia'], TOK, None, random.Random(2), repeats=400)
            self.assertAlmostEqual(per_char, exact / 7, delta=0.01 * exact / 7)
            self.assertLess(stderr, 0.05)

    def test_nelbo_masks_each_size_once_per_repeat(self):
        sizes = []
        def fake_model(canvas, weights, positions=None):
            sizes.append(canvas.count(TOK.MASK))
            return [[0.0] * TOK.vocab_size for _ in canvas]
        with mock.patch.object(md, 'mask_predictor', fake_model):
            md.nelbo('mia', TOK, None, random.Random(0), repeats=2)
        self.assertEqual(sorted(sizes), sorted(list(range(1, 17)) * 2))

    def test_position_unigram_by_hand(self):
        tok = md.Tokenizer(['ab', 'b'], md.block_size)  # a, b, MASK, PAD: 4 tokens
        # position 0: counts a 1+1, b 1+1, MASK 1, PAD 1 -> p(b) = 2/6; position 1: b 2/6 ... PAD
        # at position 1 for 'b': (1+1)/6; positions 2..15: PAD (1+2)/6
        nll = md.position_unigram_nll(['ab', 'b'], ['b'], tok)
        want = -(math.log(2 / 6) + math.log(2 / 6) + 14 * math.log(3 / 6)) / 2
        self.assertAlmostEqual(nll, want, places=12)


class TestSampleStats(unittest.TestCase):
    def test_hand_made_list(self):
        train, heldout = ['anna', 'bob', 'cleo'], ['dan']
        samples = ['anna', 'anna', 'dan', 'zed', 'bob', 'xy']
        stats = md.sample_stats(samples, train, heldout)
        self.assertAlmostEqual(stats['distinct'], 5 / 6)
        self.assertAlmostEqual(stats['in_train'], 3 / 6)
        self.assertAlmostEqual(stats['in_heldout'], 1 / 6)
        self.assertAlmostEqual(stats['new'], 2 / 6)
        self.assertEqual(stats['empty'], 0)
        # lengths: samples 4,4,3,3,3,2 -> {2: 1/6, 3: 3/6, 4: 2/6}; data 4,3,4 -> {3: 1/3, 4: 2/3}
        want_tv = 0.5 * (abs(1 / 6 - 0) + abs(3 / 6 - 1 / 3) + abs(2 / 6 - 2 / 3))
        self.assertAlmostEqual(stats['length_tv'], want_tv)
        self.assertAlmostEqual(md.sample_stats(['ab', ''], ['ab'], [])['empty'], 0.5)
        self.assertAlmostEqual(md.sample_stats(train, train, [])['length_tv'], 0.0)


if __name__ == '__main__':
    unittest.main()
