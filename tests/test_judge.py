"""The sample judge (tests/name_quality.py) and the left-to-right twin (tests/left_to_right.py)."""
import math
import os
import random
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import microdiffusion as md
import name_quality as nq
import left_to_right as l2r

NAMES = ('emma olivia ava isabella sophia mia charlotte amelia harper evelyn abigail emily elizabeth mila ella '
         'avery sofia camila aria scarlett victoria madison luna grace chloe penelope layla riley zoey nora lily '
         'eleanor hannah lillian addison aubrey ellie stella natalie zoe leah hazel violet aurora savannah audrey '
         'brooklyn bella claire skylar lucy paisley everly anna caroline nova genesis emilia kennedy samantha maya '
         'willow kinsley naomi aaliyah elena sarah ariana allison gabriella alice madelyn cora ruby eva serenity '
         'autumn adeline hailey gianna valentina isla eliana quinn nevaeh ivy sadie piper lydia alexa josephine').split()


class TestKneserNey(unittest.TestCase):
    def test_unigram_by_hand(self):
        # counts a:2 b:1 end:2 of 5; one count of 1 and two of 2, so D = 1 / (1 + 2*2) = 0.2;
        # p(x) = max(c - D, 0) / 5 + D * 3 types / 5 * uniform 1/3
        model = nq.KneserNey(['ab', 'a'], 1, 'ab')
        self.assertAlmostEqual(model.discounts[0], 0.2)
        for symbol, expected in (('a', 0.4), ('b', 0.2), (nq.END, 0.4)):
            self.assertAlmostEqual(model.prob('', symbol), expected)

    def test_every_context_is_a_distribution(self):
        model = nq.KneserNey(NAMES, 4, 'abcdefghijklmnopqrstuvwxyz')
        for context in ('^^^', '^^e', 'emm', 'lla', 'zzz', '^qx'):
            self.assertAlmostEqual(sum(model.prob(context, s) for s in model.symbols), 1.0)
        self.assertGreater(model.prob('^^q', 'x'), 0.0)  # never seen, still possible

    def test_a_sample_with_no_singletons_still_gives_every_symbol_a_probability(self):
        model = nq.KneserNey(['ab', 'ab', 'ba', 'ba'], 2, 'abq')  # every count is 2 or more
        self.assertGreater(model.prob('^', 'q'), 0.0)
        self.assertGreater(model.prob('a', 'q'), 0.0)
        self.assertAlmostEqual(sum(model.prob('a', s) for s in model.symbols), 1.0)

    def test_lower_orders_count_contexts(self):
        model = nq.KneserNey(['xa', 'ya', 'za', 'b', 'b', 'b'], 2, 'abxyz')
        # as a unigram, 'b' occurs as often as 'a', but after one context only (the start)
        # while 'a' follows three: the continuation count of 'a' is 3, of 'b' 1
        self.assertEqual(model.counts[0]['']['a'], 3)
        self.assertEqual(model.counts[0]['']['b'], 1)


class TestJudge(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rng = random.Random(0)
        names = list(NAMES)
        rng.shuffle(names)
        cls.heldout, cls.train = names[:20], names[20:]
        cls.judge = nq.Judge(cls.train, cls.heldout)

    def test_collapsed_samples_lose_on_recall_and_first_letters(self):
        varied = self.judge.judge(self.train)
        collapsed = self.judge.judge([name for name in self.train if name[0] == 'a'] * 5)
        self.assertGreater(collapsed['recall'], varied['recall'] + 0.2)
        self.assertGreater(collapsed['first_tv'], varied['first_tv'] + 0.5)
        self.assertAlmostEqual(varied['first_tv'], 0.0)
        self.assertLess(collapsed['distinct'], varied['distinct'])

    def test_garbled_samples_lose_on_precision(self):
        rng = random.Random(1)
        garbled = [''.join(rng.sample(name, len(name))) for name in self.heldout]
        self.assertLess(self.judge.judge(self.heldout)['precision'] + 0.5, self.judge.judge(garbled)['precision'])

    def test_wrong_lengths_raise_length_tv(self):
        self.assertGreater(self.judge.judge(['ava', 'mia', 'eva', 'ivy'])['length_tv'],
                           self.judge.judge(self.train)['length_tv'] + 0.3)

    def test_counts_on_a_hand_made_list(self):
        samples = [self.train[0], self.train[0], self.heldout[0], 'zzzq', '']
        r = self.judge.judge(samples)
        self.assertEqual((r['n'], r['distinct'], r['in_train'], r['in_heldout'], r['empty']), (5, 0.8, 0.4, 0.2, 0.2))

    def test_command_line(self):
        with tempfile.TemporaryDirectory() as folder:
            data, samples = os.path.join(folder, 'names.txt'), os.path.join(folder, 'samples.txt')
            with open(data, 'w') as f:
                f.write('\n'.join(NAMES) + '\n')
            with open(samples, 'w') as f:
                f.write('emma\nzara\n\nkai\n')
            result = subprocess.run([sys.executable, os.path.join(HERE, 'name_quality.py'), '--input', data,
                                     '--twin-steps', '5', '--twin-samples', '7', samples],
                                    capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        rows = [line for line in result.stdout.splitlines() if line.startswith('| ')]
        n_train = len(NAMES) - len(NAMES) // 10
        self.assertTrue(rows[1].startswith(f'| real names | {n_train} |'), rows)
        self.assertTrue(rows[2].startswith('| left to right, T 0.5 | 7 |'), rows)
        self.assertTrue(rows[3].startswith('| left to right, T 1 | 7 |'), rows)
        self.assertTrue(rows[4].startswith('| samples.txt | 4 |'), rows)
        self.assertTrue(rows[4].endswith('| 25.0% |'), rows)  # one empty name of four


class TestLeftToRight(unittest.TestCase):
    def setUp(self):
        self.tok = md.Tokenizer(NAMES)
        self.bos = len(self.tok.chars)
        self.state_dict = l2r.init_params(self.bos + 1, random.Random(0))

    def test_parameter_count(self):
        # the README: with the 26 letters and BOS, 4,192 parameters (one layer and an lm_head)
        state_dict = l2r.init_params(27, random.Random(0))
        self.assertEqual(len(md.parameters(state_dict)), 2 * 27 * 16 + 16 * 16 + 4 * 16 * 16 + 2 * 64 * 16)
        self.assertEqual(len(md.parameters(state_dict)), 4192)

    def test_attention_is_causal(self):
        weights = md.as_floats(self.state_dict)
        one, two = [self.bos, 3, 4, 5, 6], [self.bos, 3, 4, 9, 1]
        a, b = l2r.gpt(one, weights), l2r.gpt(two, weights)
        for pos in range(3):  # positions before the change see nothing of it
            self.assertEqual(a[pos], b[pos])
        self.assertNotEqual(a[3], b[3])

    def test_loss_gradient_against_finite_differences(self):
        loss, n = l2r.name_loss('emma', self.tok, self.bos, self.state_dict)
        self.assertEqual(n, 5)  # four letters and the end
        loss.backward()
        rng = random.Random(2)
        for name in ('wte', 'lm_head', 'layer0.attn_wq', 'layer0.mlp_fc1'):
            matrix = self.state_dict[name]
            p = matrix[rng.randrange(len(matrix))][rng.randrange(len(matrix[0]))]
            if name == 'wte':
                p = matrix[self.tok.stoi['m']][3]
            h, original = 1e-6, p.data
            p.data = original + h
            up = l2r.name_loss('emma', self.tok, self.bos, md.as_floats(self.state_dict))[0]
            p.data = original - h
            down = l2r.name_loss('emma', self.tok, self.bos, md.as_floats(self.state_dict))[0]
            p.data = original
            self.assertAlmostEqual(p.grad, (up - down) / (2 * h), places=6, msg=name)

    def test_training_lowers_the_held_out_nll_and_samples_end(self):
        weights = md.as_floats(self.state_dict)
        before = l2r.heldout_nll(NAMES[:10], self.tok, self.bos, weights)
        self.assertAlmostEqual(before, math.log(self.bos + 1), delta=0.3)  # about uniform at the start
        l2r.train(NAMES[10:], self.tok, self.bos, self.state_dict, 150)
        weights = md.as_floats(self.state_dict)
        self.assertLess(l2r.heldout_nll(NAMES[:10], self.tok, self.bos, weights), before - 0.4)
        rng = random.Random(3)
        for _ in range(10):
            name = l2r.sample(self.tok, self.bos, weights, rng, 1.0)
            self.assertLessEqual(len(name), 15)
            self.assertTrue(set(name) <= set(self.tok.chars))

    def test_command_line(self):
        with tempfile.TemporaryDirectory() as folder:
            data = os.path.join(folder, 'names.txt')
            with open(data, 'w') as f:
                f.write('\n'.join(NAMES) + '\n')
            result = subprocess.run([sys.executable, os.path.join(HERE, 'left_to_right.py'), '--input', data,
                                     '--num-steps', '20', '--samples', '5', '--out', os.path.join(folder, 'lr')],
                                    capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertRegex(result.stdout, rf'held-out NLL: \d\.\d{{3}} nats/char on {len(NAMES) // 10} names never trained on')
            for temperature in ('0.5', '1'):
                with open(os.path.join(folder, f'lr-t{temperature}.txt')) as f:
                    self.assertEqual(len(f.read().splitlines()), 5)


if __name__ == '__main__':
    unittest.main()
