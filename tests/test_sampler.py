"""The sampler's schedule and rules, templates, the trace, and the evaluation."""
import io
import itertools
import math
import os
import random
import sys
import types
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import microdiffusion as md

NAMES = ['emma', 'olivia', 'ava', 'isabella', 'sophia', 'mia', 'zoe', 'quinn', 'xavier', 'jakob']
TOK = md.Tokenizer(NAMES)
WEIGHTS = md.as_floats(md.init_params(TOK.vocab_size, random.Random(0)))
LENGTHS = md.length_model(NAMES)


def parse_template(template):  # --template, as main() reads it
    return md.check_flags(types.SimpleNamespace(save=None, score=None, template=template), TOK)


def uniform_model(canvas, tok, weights, positions=None):  # every letter alike: for length tests
    return [[0.0] * len(tok.chars) for _ in canvas]


def canvases_after_each_step(trace, n_steps):
    """The canvas after every step 1..n_steps (the trace only lists steps that changed it)."""
    changed = {step: canvas for step, _, _, canvas in trace}
    canvas, result = changed[0], []
    for step in range(1, n_steps + 1):
        canvas = changed.get(step, canvas)
        result.append(canvas)
    return result


class TestSampler(unittest.TestCase):
    def run_sampler(self, sampler, template=None, n_steps=64, seed=1):
        return md.sample(TOK, WEIGHTS, LENGTHS, random.Random(seed), n_steps, sampler,
                         template and parse_template(template))

    def test_schedule_over_the_letters_commits_and_output(self):
        for sampler in md.SAMPLERS:
            for n_steps in (64, 10, 1):
                for seed in range(4):
                    with self.subTest(sampler=sampler, steps=n_steps, seed=seed):
                        name, trace = self.run_sampler(sampler, n_steps=n_steps, seed=seed)
                        previous = trace[0][3]
                        n_letters = len(previous) - 1  # the length comes first: L MASKs, then END
                        self.assertEqual(previous, [TOK.MASK] * n_letters + [TOK.END])
                        for step, canvas in enumerate(canvases_after_each_step(trace, n_steps), 1):
                            s = math.cos(math.pi / 2 * (1 - (n_steps - step) / n_steps))
                            self.assertEqual(canvas.count(TOK.MASK), round(n_letters * s), f"after step {step}")
                            for before, after in zip(previous, canvas):  # committed tokens stay
                                if before != TOK.MASK:
                                    self.assertEqual(before, after)
                            self.assertEqual(canvas[-1], TOK.END)
                            previous = canvas
                        self.assertNotIn(TOK.MASK, previous)
                        self.assertNotIn(TOK.END, previous[:-1])  # END is never drawn
                        self.assertEqual(name, TOK.decode(previous))
                        self.assertEqual(len(name), n_letters)

    @mock.patch.object(md, 'temperature_end', 0.8)  # a temperature that falls
    def test_temperatures_at_the_first_and_the_last_letter(self):
        # with 64 steps a name of 2 to 15 letters gets its first letter at a temperature of 0.95
        # to 0.99 and its last at 0.81 to 0.85; a single letter at 0.90: the middle of the fall
        for n_letters in range(1, md.block_size):
            _, trace = self.run_sampler('confidence', template='_' * n_letters)
            temperatures = [temperature for _, _, temperature, _ in trace[1:]]
            first, last = temperatures[0], temperatures[-1]
            if n_letters == 1:
                self.assertAlmostEqual(first, 0.90, delta=0.005)
            else:
                self.assertTrue(0.95 <= round(first, 2) <= 0.99, (n_letters, first))
                self.assertTrue(0.81 <= round(last, 2) <= 0.85, (n_letters, last))

    def test_default_steps_commit_one_letter_per_pass_and_few_steps_several(self):
        for n_letters in range(1, md.block_size):
            def most_per_step(n_steps):
                kept = [round(n_letters * md.cosine_noise(step, n_steps)) for step in range(n_steps + 1)]
                return max(a - b for a, b in zip(kept, kept[1:]))
            self.assertEqual(most_per_step(64), 1, n_letters)
            # the comment above nelbo(): 22 steps or more reveal one letter at a time, and 21
            # reveal two at once in a name of 15 letters
            self.assertEqual(max(most_per_step(n) for n in range(22, 65)), 1, n_letters)
            self.assertEqual(most_per_step(21), 2 if n_letters == 15 else 1, n_letters)
            # the README's table: 16 steps commit two letters in one pass only for 12 letters or more
            self.assertEqual(most_per_step(16), 1 if n_letters < 12 else 2, n_letters)
            if n_letters >= 4:
                self.assertGreater(most_per_step(4), 1, n_letters)
        _, trace = self.run_sampler('confidence', template='________', n_steps=4)
        committed = [canvas.count(TOK.MASK) for *_, canvas in trace]
        self.assertGreater(max(a - b for a, b in zip(committed, committed[1:])), 1)  # a pass with several

    def test_lengths_come_from_the_length_model(self):
        lengths = [0.0, 0.0, 0.0, 0.7, 0.0, 0.3] + [0.0] * 10
        rng = random.Random(2)
        for sampler in md.SAMPLERS:  # no template: the length model decides
            with mock.patch.object(md, 'mask_predictor', uniform_model):
                names = [md.sample(TOK, WEIGHTS, lengths, rng, 2, sampler)[0] for _ in range(300)]
            self.assertEqual({len(name) for name in names}, {3, 5})
            self.assertAlmostEqual(sum(len(name) == 3 for name in names) / 300, 0.7, delta=0.08)

    def test_the_last_letters_are_committed_at_the_end(self):
        # with 64 cosine steps and 15 letters, a letter is committed in the last step, and
        # after step 16 most letters are still masked: the annealed temperature gets to act
        for sampler in md.SAMPLERS:
            _, trace = self.run_sampler(sampler, template='_' * 15)
            canvases = canvases_after_each_step(trace, 64)
            # round(15 * s) first reaches 0 at step 63: s = sin(pi / 128) there, 15 s = 0.37
            self.assertEqual(trace[-1][0], 63)
            self.assertEqual(canvases[61].count(TOK.MASK), 1)
            self.assertGreaterEqual(canvases[15].count(TOK.MASK), 13)
            model_calls = len(trace) - 1
            self.assertEqual(model_calls, len({step for step, *_ in trace[1:]}))
            self.assertLessEqual(model_calls, 15)  # steps with nothing to commit skip the model

    def test_confidence_commits_the_surest_positions_first(self):
        # a fake model under which position pos surely draws letter pos, and a fake confidence
        # that depends on the letter only: without choice noise, the positions must be
        # committed in confidence order
        confidences = [0.2, 0.9, 0.5, 0.7, 0.1, 0.3]
        def fake_model(canvas, tok, weights, positions=None):
            return [[1000.0 * (letter == pos) for letter in range(len(TOK.chars))]
                    for pos in range(len(canvas))]
        with mock.patch.object(md, 'mask_predictor', fake_model), mock.patch.object(md, 'choice_noise', 0.0), \
                mock.patch.object(md, 'confidence', lambda probs, token: confidences[token]):
            name, trace = md.sample(TOK, None, LENGTHS, random.Random(0), 64, 'confidence',
                                    parse_template('______'))
        self.assertEqual(name, ''.join(TOK.chars[:6]))
        order = []
        for *_, canvas in trace[1:]:
            order += [pos for pos, token in enumerate(canvas[:-1]) if token != TOK.MASK and pos not in order]
        self.assertEqual(order, [1, 3, 2, 5, 0, 4])

    @mock.patch.object(md, 'temperature_end', 0.8)
    def test_trace_masked_count_only_falls_and_temperature_anneals(self):
        _, trace = self.run_sampler('confidence', template='_' * 8)
        counts = [canvas.count(TOK.MASK) for *_, canvas in trace]
        self.assertEqual(counts, sorted(counts, reverse=True))
        self.assertEqual(counts[-1], 0)
        self.assertTrue(all(c > 0 for c in counts[:-1]))
        self.assertTrue(all(len(canvas) == 9 for *_, canvas in trace))  # L + 1 symbols
        for step, t, temperature, _ in trace[1:]:  # t is the noise level after the step; the
            self.assertEqual(t, math.cos(math.pi / 2 * step / 64))  # temperature falls from 1 to
            self.assertAlmostEqual(temperature, 0.8 + 0.2 * math.cos(math.pi / 2 * (step - 1) / 64))
        _, trace = self.run_sampler('random')
        self.assertTrue(all(temperature == 1.0 for _, _, temperature, _ in trace[1:]))

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
                                self.assertNotIn(final[pos], (TOK.END, TOK.MASK))  # a letter
                            else:
                                self.assertEqual(final[pos], TOK.stoi[ch])
                        self.assertEqual(final[-1], TOK.END)
                        if not template.endswith('*'):
                            self.assertEqual(len(final), len(body) + 1)  # the template's length

    def test_template_with_star_draws_the_length_at_least_the_templates(self):
        rng = random.Random(5)
        template = parse_template('ma__*')
        with mock.patch.object(md, 'mask_predictor', uniform_model):
            names = [md.sample(TOK, WEIGHTS, LENGTHS, rng, 2, 'confidence', template)[0] for _ in range(400)]
        self.assertTrue(all(name.startswith('ma') for name in names))
        lengths = [len(name) for name in names]
        self.assertEqual(min(lengths), 4)
        # p(L) restricted to L >= 4 and renormalised: 6 letters is 'olivia', 'sophia', 'xavier'
        want = LENGTHS[6] / sum(LENGTHS[4:])
        self.assertAlmostEqual(lengths.count(6) / len(lengths), want, delta=0.07)

    def test_bad_templates(self):
        for template in ('', '*', 'a*b', 'ma-*', 'x' * 16, 'x' * 16 + '*', 'é*'):
            with self.subTest(template=template):
                with self.assertRaisesRegex(md.UserError, "is not 1 to 15 of '_' and the letters"):
                    parse_template(template)
        self.assertEqual(parse_template('x' * 15), ([TOK.stoi['x']] * 15, False))
        self.assertEqual(parse_template('_x*'), ([TOK.MASK, TOK.stoi['x']], True))
        name, _ = self.run_sampler('confidence', 'x' * 15 + '*')  # only 15 letters fit: L = 15
        self.assertEqual(name, 'x' * 15)


class TestEvaluation(unittest.TestCase):
    def test_a_random_order_hides_k_letters_for_every_k_nested(self):
        rng = random.Random(0)
        for _ in range(200):
            masks = md.random_order_masks('isabella', rng)
            self.assertEqual([len(masked) for masked in masks], list(range(1, 9)))
            for smaller, larger in zip(masks, masks[1:]):  # revealing one letter at a time
                self.assertTrue(set(smaller) < set(larger))
            self.assertEqual(masks[-1], list(range(8)))
        # the letter revealed last is any of the eight alike
        last = [md.random_order_masks('isabella', rng)[0][0] for _ in range(8000)]
        for pos in range(8):
            self.assertAlmostEqual(last.count(pos) / 8000, 1 / 8, delta=0.015)

    def test_nelbo_of_a_context_free_model_is_its_exact_log_likelihood(self):
        # if the logits at a position never depend on the canvas, -log p(name) is -log p(L) plus
        # the sum of the per-letter cross-entropies, and the ELBO is tight: -log p(L) + sum_k c_k
        # has exactly that mean
        rng = random.Random(0)
        fixed = [[rng.uniform(-2, 2) for _ in range(len(TOK.chars))] for _ in range(md.block_size)]
        context_free = lambda canvas, tok, weights, positions=None: fixed[:len(canvas)]
        with mock.patch.object(md, 'mask_predictor', context_free):
            letters = TOK.encode('sophia')[:-1]
            exact = -math.log(LENGTHS[6]) + sum(md.cross_entropy(fixed[pos], token) for pos, token in enumerate(letters))
            estimates = [md.nelbo('sophia', md.random_order_masks('sophia', rng), TOK, None, LENGTHS) for _ in range(400)]
            self.assertAlmostEqual(sum(estimates) / 400, exact, delta=0.005 * exact)

    def test_per_character_by_hand(self):
        # bounds 6 and 12 nats on names of 2 and 5 letters: 18 nats over 3 + 6 characters
        bounds = iter([6.0, 12.0])
        with mock.patch.object(md, 'nelbo', lambda *args: next(bounds)):
            per_char, _ = md.heldout_nelbo(['ab', 'abcde'], TOK, None, LENGTHS, random.Random(0))
        self.assertEqual(per_char, 2.0)
        # residuals 6 - 2*3 = 0 and 12 - 2*6 = 0: no spread at all; -2 and +2: sqrt(8 / 2) / 4.5
        for bounds, want in (([6.0, 12.0], ' ± 0.000 '), ([4.0, 14.0], f' ± {math.sqrt(8 / 2) / 4.5:.3f} ')):
            with mock.patch('sys.stdout', new_callable=io.StringIO) as out:
                md.print_nelbo(2.0, bounds, ['ab', 'abcde'])
            self.assertEqual(out.getvalue(), f'held-out NELBO: 2.000{want}nats/char on 2 names never trained on\n')

    def test_nelbo_runs_the_model_once_for_each_number_of_hidden_letters(self):
        calls = []
        def fake_model(canvas, tok, weights, positions=None):
            calls.append((list(canvas), positions))
            return [[0.0] * len(TOK.chars) for _ in canvas]
        with mock.patch.object(md, 'mask_predictor', fake_model):
            md.nelbo('mia', md.random_order_masks('mia', random.Random(0)), TOK, None, LENGTHS)
        self.assertEqual(sorted(canvas.count(TOK.MASK) for canvas, _ in calls), [1, 2, 3])
        for canvas, positions in calls:
            self.assertEqual(len(canvas), 4)
            self.assertEqual(canvas[-1], TOK.END)
            self.assertEqual(positions, [pos for pos, token in enumerate(canvas) if token == TOK.MASK])

    def test_score_is_the_nelbo_averaged_over_every_order(self):
        for name in ('mia', 'emma'):
            length_nats, letters_nats = md.score(name, TOK, WEIGHTS, LENGTHS)
            self.assertEqual(length_nats, -math.log(LENGTHS[len(name)]))
            bounds = [md.nelbo(name, [sorted(last_first[:k]) for k in range(1, len(name) + 1)], TOK, WEIGHTS, LENGTHS)
                      for last_first in itertools.permutations(range(len(name)))]  # all L! orders
            self.assertAlmostEqual(length_nats + letters_nats, sum(bounds) / len(bounds), places=12)

    def test_score_samples_the_sets_of_hidden_letters_where_there_are_many(self):
        passes, real_predictor = [], md.mask_predictor
        def counting_predictor(canvas, tok, weights, positions=None):
            passes.append(canvas.count(TOK.MASK))
            return real_predictor(canvas, tok, weights, positions)
        with mock.patch.object(md, 'score_sets', 3):
            first = md.score('sophia', TOK, WEIGHTS, LENGTHS)
            with mock.patch.object(md, 'mask_predictor', counting_predictor):
                again = md.score('sophia', TOK, WEIGHTS, LENGTHS)
        self.assertEqual(first, again)  # the sets are drawn from a generator seeded with the name
        # C(6, k) sets of k hidden letters, 3 of them where there are more: 3 + 3 + 3 + 3 + 3 + 1
        self.assertEqual(sorted(passes), [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3 + [5] * 3 + [6])


if __name__ == '__main__':
    unittest.main()
